#ifndef CALLEE_H
#define CALLEE_H
#ifndef WORK_ITERS
#define WORK_ITERS 40
#endif
int triv_impl(int x);
int work_impl(int x);
int rec_direct(int n);
int rec_ptr_impl(int n);
int rec_dsu_impl(int n);
int rec_bundle_impl(int n);
int rec_naive_impl(int n);
/* the recursive entry points of each variant (call_bench.c) */
extern int (*rec_fp)(int);
int rec_dsu(int n);
int rec_bdsu(int n);
int rec_naive(int n);
#endif
