/* callee.c - the callees of call_bench, in their own translation unit so the
 * caller cannot inline them (no LTO). */
/* As psu compiles a DSU unit of an executable (templates/function_entry.c.j2). */
#define PSU_TLS __attribute__((tls_model("local-exec")))
#include "psu_fast.h"
#include "callee.h"

__attribute__((noinline)) int triv_impl(int x) { return x + 1; }

/* ~50 ns of dependent integer work (calibrated by the direct variant). */
static inline __attribute__((always_inline)) int work_loop(int x)
{
    unsigned v = (unsigned)x;
    for (int i = 0; i < WORK_ITERS; i++) {
        v = v * 1103515245u + 12345u;
        __asm__ volatile("" : "+r"(v));
    }
    return (int)(v >> 1);
}

__attribute__((noinline)) int work_impl(int x) { return work_loop(x); }

/* ---- DSU functions, as psu generates them ---------------------------- */
struct psu_function triv_record = { PSU_EXECUTABLE_VERSION, "callee.c:triv" };
struct psu_function work_record = { PSU_EXECUTABLE_VERSION, "callee.c:work" };
struct psu_function rec_record = { PSU_EXECUTABLE_VERSION, "callee.c:rec" };
static struct psu_function *records[] __attribute__((used, section("psu_functions"))) = {
    &triv_record, &work_record, &rec_record,
};
/* "dsu-bundle": the same functions once a patch made a bundle's version
 * current, i.e. a slot naming module 1 (never loaded: only its counters are
 * used) and code here, so every outermost call publishes a reference. */
#define IN_BUNDLE(code) ((uintptr_t)(code) + ((uintptr_t)1 << PSU_MODULE_SHIFT))
struct psu_function triv_bundle_record = { IN_BUNDLE(triv_impl), "bundle:triv" };
struct psu_function work_bundle_record = { IN_BUNDLE(work_impl), "bundle:work" };
struct psu_function rec_bundle_record = { IN_BUNDLE(rec_bundle_impl), "bundle:rec" };

/* The general path of templates/unit_trailer.c.j2 ... */
#define GENERAL_PATH(name, record)                                              \
    static __attribute__((noinline)) int name##_general(int x)                 \
    {                                                                           \
        struct psu_call c = psu_enter_from(&record, psu_current(&record));      \
        if (c.calls) {                                                          \
            int r = ((int (*)(int))c.code)(x);                                  \
            psu_leave(c);                                                       \
            return r;                                                           \
        }                                                                       \
        if (c.code)                                                             \
            return ((int (*)(int))c.code)(x);                                   \
        return name(x);                                                         \
    }
/* ... and the entry check of templates/function_entry.c.j2. */
#define ENTRY_CHECK(name, record)                                               \
    if (__builtin_expect(!psu_executable_is_current(&record), 0))               \
        return name##_general(x);

/* Recursion: depth levels, each level calls the next through the variant's
 * own mechanism (direct, pointer, DSU function, bundle's version, naive
 * trampoline).  The empty asm keeps the compiler from eliminating the tail
 * recursion. */
#define RECURSION_BODY(next)                                                    \
    if (x <= 0)                                                                 \
        return 0;                                                               \
    int r = next(x - 1);                                                        \
    __asm__ volatile("" : "+r"(r));                                             \
    return r + 1;
#define RECURSION(name, next)                                                   \
    __attribute__((noinline)) int name(int x) { RECURSION_BODY(next) }

#define DSU_FUNCTION(name, record, body)                                        \
    GENERAL_PATH(name, record)                                                  \
    __attribute__((noinline)) int name(int x) { ENTRY_CHECK(name, record) body }
DSU_FUNCTION(triv_dsu, triv_record, return x + 1;)
DSU_FUNCTION(work_dsu, work_record, return work_loop(x);)
DSU_FUNCTION(rec_dsu, rec_record, RECURSION_BODY(rec_dsu))
DSU_FUNCTION(triv_bdsu, triv_bundle_record, return x + 1;)
DSU_FUNCTION(work_bdsu, work_bundle_record, return work_loop(x);)
DSU_FUNCTION(rec_bdsu, rec_bundle_record, RECURSION_BODY(rec_bdsu))

RECURSION(rec_direct, rec_direct)
RECURSION(rec_ptr_impl, rec_fp)
RECURSION(rec_bundle_impl, rec_bdsu)
RECURSION(rec_naive_impl, rec_naive)
