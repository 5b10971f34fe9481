/* v1/kinds.c changed in every way change analysis classifies
 * (tests/test_changes_pipeline.py). */
#define GETTER(name) int get_##name(void) { return name; }

static long counter;                                        /* type changed */
static int scale = 3;                                       /* initializer changed */
static int fresh_state;                                     /* added */
int steady = 1;                                             /* same */

int exported(int v) { return v + (int)counter + 1; }        /* body changed */
static int called_by_name(int v) { return v * scale; }      /* same */
static int address_taken(long v) { return (int)v - 1; }     /* signature changed */
static int taken_later(int v) { return v + 5; }             /* now a DSU function */
static inline int inlined(int v) { return v << 1; }         /* same */
int kept_direct(int v) { return v + 3; }                    /* same */
inline int becomes_inline(int v) { return v; }              /* DSU status changed */
int fresh(void) { return fresh_state; }                     /* added */
GETTER(scale)                                               /* same */

int psu_transform_counter(void *old)
{
    counter = *(int *)old;
    return 0;
}

int (*pointer)(long) = address_taken;
int (*later)(int) = taken_later;

int main(void)
{
    return exported(called_by_name(inlined(kept_direct(get_scale())))) + pointer(1) +
           later(steady) + becomes_inline(0) + fresh();
}
