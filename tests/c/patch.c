/* patch.c - the code object of a test bundle: new versions of app.c's
 * answer and park.  -DVERSION=N selects the version (answer(x) = N*1000 + x);
 * the other macros make deliberately broken bundles:
 *   UNRESOLVED          references a symbol nothing defines
 *   UNKNOWN_NAME        names a function the program does not have
 *   FAILING_TRANSFORMER a state transformer that refuses
 *   USES_ADDED          answer calls added(), a function the bundle adds
 *                       (slot and trampoline in state.c, code here) */
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
#include "psu_bundle_abi.h"

#define STR2(x) #x
#define STR(x) STR2(x)

extern _Atomic int app_release;

#ifdef UNRESOLVED
extern int psu_test_no_such_symbol(void);
#endif
#ifdef USES_ADDED
extern int added(int);          /* trampoline, in the bundle's state object */
extern int added_base;          /* variable the bundle adds (state object) */
__attribute__((aligned(PSU_CODE_ALIGN))) static int added_impl(int x)
{
    return x + added_base;
}
#endif

__attribute__((aligned(PSU_CODE_ALIGN))) static int answer_v(int x)
{
#ifdef UNRESOLVED
    x += psu_test_no_such_symbol();
#endif
#ifdef USES_ADDED
    return VERSION * 1000 + added(x);
#else
    return VERSION * 1000 + x;
#endif
}

__attribute__((aligned(PSU_CODE_ALIGN))) static int park_v(int ticket)
{
    printf("parked v" STR(VERSION) " %d\n", ticket);
    fflush(stdout);
    while (atomic_load(&app_release) < ticket)
        usleep(1000);
    printf("unparked v" STR(VERSION) " %d\n", ticket);
    fflush(stdout);
    return VERSION;
}


const struct psu_bundle_function psu_bundle_functions[] = {
    { "app.c:answer", (void *)answer_v },
#ifdef UNALIGNED
    /* as a bundle made before versions were aligned: never called, the
     * runtime must refuse it before any switch */
    { "app.c:park", (void *)((char *)park_v + 16) },
#else
    { "app.c:park", (void *)park_v },
#endif
#ifdef UNKNOWN_NAME
    { "app.c:no_such_function", (void *)answer_v },
#endif
#ifdef USES_ADDED
    { "app.c:added", (void *)added_impl },
#endif
    { 0, 0 },
};

#ifdef FAILING_TRANSFORMER
static int refuse(void) { return 7; }
int (*const psu_bundle_transformers[])(void) = { refuse, 0 };
#endif
