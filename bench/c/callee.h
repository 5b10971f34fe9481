#ifndef CALLEE_H
#define CALLEE_H
#ifndef WORK_ITERS
#define WORK_ITERS 40
#endif
int triv_impl(int x);
int work_impl(int x);
int rec_direct(int n);
int rec_ptr_impl(int n);
int rec_bundle_impl(int n);
int rec_naive_impl(int n);
/* the DSU functions (callee.c) */
int triv_dsu(int x);
int work_dsu(int x);
int rec_dsu(int n);
int triv_bdsu(int x);
int work_bdsu(int x);
int rec_bdsu(int n);
/* the recursive entry points of the pointer and naive variants (call_bench.c) */
extern int (*rec_fp)(int);
int rec_naive(int n);
#endif
