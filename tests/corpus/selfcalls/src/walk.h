#ifndef WALK_H
#define WALK_H
int walk(int n);
int is_even(int n);
int is_odd(int n);
int leaf(void);
void walk_pause_at(int level);
int walk_paused(void);
void walk_go(void);
const char *walk_trace(void);
#endif
