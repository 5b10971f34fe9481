/* Four units, each of several kinds of definition a bundle may leave out. */
#ifndef UNITS_H
#define UNITS_H
extern const int alpha_table[4];
int alpha_value(void);
int alpha_other(int x);
int beta_value(void);
int beta_kr();
int gamma_value(void);
int gamma_sum(int n, ...);
int delta_value(void);
int delta_made(void);
#endif
