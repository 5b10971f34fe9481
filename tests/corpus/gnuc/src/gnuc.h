/* Functions of the GNU C constructs corpus, called by main.c. */
#ifndef GNUC_H
#define GNUC_H

int stmt_expr_demo(int x);
int first_negative(const int *values, int n);
int shadow_demo(int n);
void classify_into(int x, int *out);
int classify(int x);
int kr_add();
int kr_default();
int kr_promoted();
int with_nested(int x);
int attributes_demo(int x);
int asm_demo(int x);
int computed_goto(int op);
int case_ranges(int c);
int arrays_demo(int n);
unsigned long long int128_demo(unsigned long long a, unsigned long long b);
int atomics_and_threads_demo(void);
int generic_demo(char *out, int size);
int pragma_demo(int x);
int operators_demo(int x);
int variadic_macro_demo(char *out, int size, int x);

#endif
