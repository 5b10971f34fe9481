/* The DSU unit's interface; the K&R functions have no prototype. */
#ifndef CORE_H
#define CORE_H

int core_step(int x);
int core_apply(int x);
int core_weight(int i);

/* variadic */
int core_format(char *out, unsigned long size, const char *fmt, ...);
int core_nest(int depth, const char *tag, ...);
int core_sum(int count, ...);
int core_first(int a, ...);
int core_tally(void);

/* K&R definitions, called without a prototype */
int core_kr();
int core_fact();

/* a thread's main loop: it never returns */
void *core_worker(void *arg);
long core_ticks(void);

/* a long call, and what tells it to return */
int core_wait(void);
int core_waiting(void);
void core_release(void);

#endif
