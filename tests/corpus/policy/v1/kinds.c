/* Every kind of function the DSU policy tells apart (tests/test_policy.py);
 * v2/kinds.c changes it in every way change analysis classifies
 * (tests/test_changes_pipeline.py). */
#define GETTER(name) int get_##name(void) { return name; }

static int counter;
static int scale = 2;
static int gone;
int steady = 1;

int exported(int v) { return v + counter; }                 /* DSU: external linkage */
static int called_by_name(int v) { return v * scale; }      /* direct: static, called by name */
static int address_taken(int v) { return v - 1; }           /* DSU: reached through a pointer */
static int taken_later(int v) { return v + 5; }             /* direct here, DSU in v2 */
static inline int inlined(int v) { return v << 1; }         /* direct: inline */
int kept_direct(int v) { return v + 3; }                    /* direct when PSU_EXCLUDE names it */
int becomes_inline(int v) { return v + gone; }              /* DSU here, inline in v2 */
int dropped(void) { return 4; }                             /* removed in v2 */
GETTER(scale)                                               /* direct: defined by a macro */

int psu_transform_counter(void *old)                        /* direct: state transformer */
{
    counter = *(int *)old;
    return 0;
}

int (*pointer)(int) = address_taken;

int main(void)
{
    return exported(called_by_name(inlined(kept_direct(get_scale())))) + pointer(1) +
           taken_later(steady) + becomes_inline(0) + dropped();
}
