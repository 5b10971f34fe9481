/* psu_bundle_abi.h - what a bundle's objects export for the runtime to find
 * (docs/bundle-format.md): the one declaration of the tables the runtime
 * reads with dlsym and the generated bundle_main.c / state_main.c define.
 *
 * Included by the runtime and by generated code compiled with the program's
 * own flags (any C standard): plain C89, no other header needed. */
#ifndef PSU_BUNDLE_ABI_H
#define PSU_BUNDLE_ABI_H

/* One function a code object provides: its qualified name ("unit.c:name")
 * and the address of its code (a function's address as void *, the dlsym
 * convention), aligned to PSU_CODE_ALIGN (psu_fast.h: 256 bytes; the slot
 * word keeps the module index in the low byte).  Tables end with
 * { NULL, NULL }. */
#ifndef PSU_CODE_ALIGN
#define PSU_CODE_ALIGN 256
#endif
struct psu_bundle_function {
    const char *name;
    void *code;
};

/* The code object (required): the functions the bundle replaces or adds. */
#define PSU_BUNDLE_FUNCTIONS "psu_bundle_functions"
extern const struct psu_bundle_function psu_bundle_functions[];

/* The code object (optional): DSU functions the bundle leaves unchanged,
 * switched only where an older bundle provides them now. */
#define PSU_BUNDLE_CARRIED "psu_bundle_carried"
extern const struct psu_bundle_function psu_bundle_carried[];

/* The code object (optional): state transformers, run in order before the
 * switch; the first non-zero result refuses the bundle.  NULL-terminated. */
#define PSU_BUNDLE_TRANSFORMERS "psu_bundle_transformers"
extern int (*const psu_bundle_transformers[])(void);

/* The code object (optional): qualified names of replaced functions whose
 * calls in the running version may never return.  NULL-terminated. */
#define PSU_BUNDLE_MAY_NOT_RETURN "psu_bundle_may_not_return"
extern const char *const psu_bundle_may_not_return[];

/* The state object (optional): the slots of the functions the bundle adds
 * (struct psu_function, psu_fast.h).  NULL-terminated. */
struct psu_function;
#define PSU_STATE_FUNCTIONS "psu_state_functions"
extern struct psu_function *psu_state_functions[];

#endif /* PSU_BUNDLE_ABI_H */
