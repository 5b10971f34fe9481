/* psu_fast.h - the DSU call path: the entry check of each DSU function of
 * the program, and the general path generated beside it.
 *
 * A DSU function's slot holds one word: the address of the current version's
 * code with the module index in its low byte.  Versions compiled into a
 * bundle are aligned to PSU_CODE_ALIGN (256) bytes (codegen.py), so the byte
 * is free; the executable's own version is the word 0 (module 0, no address:
 * it is the function's own body).  Because the word carries the module index,
 * there is no version descriptor to read (or free) between loading the slot
 * and publishing the reference; and because it sits in the low byte, one
 * byte move gives the index and one `and` the address.
 *
 * Protocol (the argument is written out in docs/memory-ordering.md):
 *   caller:  w = slot; count[module(w)] = sp; compiler barrier (A);
 *            if (slot != w) { count = 0; retry }  call; count = 0 (release)
 *            (a counted call finds its count 0: nested calls count nothing)
 *   updater: exchange every slot of the update; membarrier (B);
 *            read every registered thread's count[m] (acquire)
 * (B) executes a full barrier on every running thread of the process, so
 * it pairs with (A): either the caller's increment is visible to the
 * updater's scan, or the caller's re-check sees the new slot and retries.
 * Where membarrier is unavailable the caller's increment is a locked RMW,
 * itself a full barrier, and the updater uses a seq_cst fence instead of (B).
 *
 * Only calls that could otherwise run unloaded code count.  A call needs no
 * reference when its code cannot be unloaded before it returns: the
 * executable's code (module 0) is never unloaded, and a module this thread
 * holds (a call into it is further down this thread's stack) stays loaded
 * until that call returns, which is after any call it makes.  So while the
 * executable's version is current (slot == PSU_EXECUTABLE_VERSION) a DSU
 * function of the program costs one compare at its entry and runs its own
 * body; nested calls inside a bundle skip the count too, and a bundle's
 * calls of its own versions (psu_version_is_current) only compare.
 *
 * Every counter is written only by its own thread (so no cache line is
 * written by two threads on the fast path); the update thread only reads.
 */
#ifndef PSU_FAST_H
#define PSU_FAST_H
/* Included into the user's DSU units, compiled with their flags (perhaps
 * -std=c89 -pedantic -Werror ...): this C11 code, and the entry check
 * macros expanded in their functions, are psu's, so the user's warnings
 * do not apply to them.  (The runtime's own build still sees them all.) */
#ifndef PSU_INTERNAL_H
#pragma GCC system_header
#endif

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#if UINTPTR_MAX != UINT64_MAX
#error "psu needs a 64-bit target: the module index is packed into the slot word"
#endif

/* The alignment of every version a bundle provides: its low byte is the
 * module index in a slot word.  (Part of the bundle ABI: the runtime refuses
 * a version that is not so aligned.) */
#ifndef PSU_CODE_ALIGN
#define PSU_CODE_ALIGN 256
#endif
/* Module indices, the executable's (0) included: at most 256, the indices the
 * slot word's low byte can hold.  Only the runtime's tests build with fewer,
 * to reach the limit quickly. */
#ifndef PSU_MAX_MODULES
#define PSU_MAX_MODULES 256
#endif
#if PSU_MAX_MODULES > 256 || PSU_MAX_MODULES < 2
#error "PSU_MAX_MODULES must be between 2 and 256"
#endif

/* Initial-exec TLS: one %fs-relative access.  Only a runtime built into a
 * shared object (the in-process tests) overrides it with -DPSU_TLS= . */
#ifndef PSU_TLS
#define PSU_TLS __attribute__((tls_model("initial-exec")))
#endif

/* One per DSU function.  Records of the executable live in the section
 * "psu_functions" (found through __start_/__stop_psu_functions); records of
 * functions added by a bundle live in that bundle's never-unloaded state
 * object and are listed by its symbol psu_state_functions.
 * `current`: written by the update thread only (exchange, seq_cst); read by
 * every call of the function. `name`: immutable qualified name.
 * `entry`, `general`: a function of the executable whose entry is a hook
 * (PSU_ENTRY_HOOK), and its general path; NULL elsewhere (a function a
 * bundle adds, a compiler without the hook).  While a bundle's version is
 * current the runtime writes a jump over the hook, to `general` or to a stub
 * that runs its counted call, so calls that reach the function's own entry
 * skip its prologue and its check (psu_runtime.c, "Entry hooks", "entry
 * stubs"); the check stays in the body for the
 * copies the compiler inlines or clones. */
struct psu_function {
    _Atomic(uintptr_t) current;
    const char *name;
    void (*entry)(void);
    void (*general)(void);
};

/* The hook at a DSU function's entry: 8 bytes at the function's address,
 * before its prologue, that the build turns into one 8-byte no-op
 * (site_scons/psu/entryhooks.py: gcc pads with eight one-byte nops, and a
 * thread may stand between two of them; no thread can be inside one
 * instruction) and the runtime into a jump to the general path, with one
 * aligned 8-byte store.  The compiler's line table gives the bytes the
 * function's first line, so a debugger's breakpoint on the function still
 * lands on the user's line.  Not with indirect branch tracking
 * (-fcf-protection=branch: endbr64 comes first), nor where the runtime
 * finds other bytes there (it checks before it writes). */
#if defined(__x86_64__) && defined(__GNUC__) && !(defined(__CET__) && (__CET__ & 1)) && \
    !defined(PSU_PARSE_ONLY) && !defined(PSU_NO_ENTRY_HOOK)
#define PSU_ENTRY_HOOK __attribute__((patchable_function_entry(8, 0)))
#define psu_hooked_entry(f) ((void (*)(void))(f))
#else
#define PSU_ENTRY_HOOK
#define psu_hooked_entry(f) ((void (*)(void))0)
#endif

/* The stack pointer here: where a counted call's frame is, for the longjmp
 * release (psu_runtime.c).  Read in the DSU function's general path, so its
 * value lies within that function's frame. */
#if defined(__x86_64__) && !defined(PSU_PARSE_ONLY)
#define psu_stack_pointer()                                                   \
    __extension__({ uintptr_t psu_sp_; __asm__("mov %%rsp, %0" : "=r"(psu_sp_)); psu_sp_; })
#elif defined(__aarch64__) && !defined(PSU_PARSE_ONLY)
#define psu_stack_pointer()                                                   \
    __extension__({ uintptr_t psu_sp_; __asm__("mov %0, sp" : "=r"(psu_sp_)); psu_sp_; })
#else
#define psu_stack_pointer() ((uintptr_t)__builtin_frame_address(0))
#endif
/* The same, stored into the count `*counter` (a relaxed store) straight
 * from %rsp where one instruction can (not under ThreadSanitizer, which must
 * see the store). */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(PSU_PARSE_ONLY)
#define psu_store_stack_pointer(counter) __asm__ volatile("mov %%rsp, %0" : "=m"(*(counter)))
#else
#define psu_store_stack_pointer(counter)                                      \
    atomic_store_explicit((counter), psu_stack_pointer(), memory_order_relaxed)
#endif

/* One per thread that made a counted call: per module, whether it holds it.
 * Records come from a pool that is never freed (psu_runtime.c), so the
 * update thread may read any record at any moment; a record is reused only
 * once its owner is known to have exited.
 *   calls[m]  0, or the stack pointer of the thread's outermost counted call
 *             into module m, in progress: one store publishes the reference
 *             and where its frame is (the longjmp release compares it with
 *             the jump's target).  Nested calls into a module the thread
 *             holds count nothing, so there is at most one.  Written by the
 *             owner only (relaxed stores, release when going down), and by
 *             the runtime on behalf of an owner known dead; read by the
 *             update thread (acquire: non-zero is a call in progress).
 *             calls[0], the executable's, is 1 from registration on and never
 *             changes: the executable is always held (it is never unloaded),
 *             so a general path that finds its slot back at the executable's
 *             version takes the nested branch, where a NULL code sends it to
 *             the function again, without a test of its own on the counted
 *             path.  (No stack pointer is 1, nor PSU_UNREGISTERED.)
 *   owner     kernel thread id; 0 = free, -1 = being reclaimed (CAS).
 *   fast      the owner's psu_fast_calls (its own TLS), the same kind of
 *             counts for the general paths' straight-line counted call, or
 *             NULL: published (release) before the owner's first fast count,
 *             cleared before the owner's TLS can be freed (psu_runtime.c,
 *             "fast counts"); read by the update thread under its lock. */
struct psu_thread_record {
    _Atomic(uintptr_t) calls[PSU_MAX_MODULES];
    _Atomic(long) owner;
    _Atomic(uintptr_t) *_Atomic fast;
};

/* This thread's record, NULL until its first counted call. */
extern _Thread_local struct psu_thread_record *psu_thread_record PSU_TLS;
/* The counts of the general paths' straight-line counted call
 * (psu_enter_fast): in this thread's TLS, so that the executable reaches
 * count m at a constant offset from the thread pointer, indexed by m, with
 * no record pointer to load first or to keep across the call.  Every count
 * is PSU_UNREGISTERED until psu_thread_register enables them (only where
 * membarrier is registered, and only in a thread whose exit the runtime sees
 * before its TLS can be freed), and again once the thread retires them at
 * its exit: the counted branch (0) does not take such a count and the nested
 * one (a hold) refuses it, sending the call to the general path's slow twin
 * (unit_trailer.c.j2), which registers the thread through psu_enter and
 * counts on its record -- with the fallback (a locked exchange) where
 * membarrier is missing.  So the fast path needs no test of
 * psu_membarrier_ready either.  Count 0 is 1 once enabled, as calls[0]. */
extern _Thread_local _Atomic(uintptr_t) psu_fast_calls[PSU_MAX_MODULES] PSU_TLS;
#define PSU_UNREGISTERED 2
/* Non-zero once membarrier(PRIVATE_EXPEDITED) is registered; written once,
 * before any update can run, by the runtime's constructor. */
extern int psu_membarrier_ready;

/* Gives this thread its record (async-signal-safe, idempotent: a signal
 * handler may call it, and may interrupt it). */
__attribute__((returns_nonnull)) struct psu_thread_record *psu_thread_register(void);

/* Test hooks: the runtime stress test widens the race window with
 * PSU_TEST_RACE_WINDOW() and proves it has teeth by building variants with
 * PSU_TEST_BROKEN_NO_RECHECK or PSU_TEST_BROKEN_NESTED.  Production builds
 * define none of them. */
#ifndef PSU_TEST_RACE_WINDOW
#define PSU_TEST_RACE_WINDOW() ((void)0)
#endif
/* test_build.py traces every slot read: which DSU functions were called. */
#ifndef PSU_TEST_SLOT_READ
#define PSU_TEST_SLOT_READ(fn) ((void)0)
#endif

/* A fast count's own loads and release stores (psu_fast_calls).  On x86-64
 * (TSO) a relaxed load is a plain load and a release store a plain store
 * after a compiler barrier; written in asm so that the count is addressed
 * from %fs in the instruction itself (gcc first computes the address of a
 * thread-local object an __atomic builtin is given: two more instructions).
 * Elsewhere, and under ThreadSanitizer, the atomics. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(PSU_PARSE_ONLY)
#define psu_count_load(counter)                                               \
    __extension__({ uintptr_t psu_v_; __asm__ volatile("mov %1, %0" : "=r"(psu_v_) : "m"(*(counter))); psu_v_; })
#define psu_count_release_zero(counter)                                       \
    __asm__ volatile("movq $0, %0" : "=m"(*(counter)) : : "memory")
#else
#define psu_count_load(counter) atomic_load_explicit((counter), memory_order_relaxed)
#define psu_count_release_zero(counter)                                       \
    atomic_store_explicit((counter), 0, memory_order_release)
#endif

/* The acquire load of a slot (the code a slot names was mapped before the
 * slot was written).  On x86-64 (TSO: a load is never reordered with
 * later loads or stores) an acquire load is a plain load that the compiler
 * may not move later accesses above: a volatile load and a compiler barrier,
 * as Linux's smp_load_acquire.  So written, gcc weighs the check as the load
 * it is when deciding whether to inline a small DSU function; an __atomic
 * builtin weighs as a call, and tips functions over the limits their plain
 * build is under (docs/memory-ordering.md).  Elsewhere, under
 * ThreadSanitizer, and for psu's own front end (pycparser reads no statement
 * expressions), the atomic load itself. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(PSU_PARSE_ONLY)
#define psu_slot_acquire(fn)                                                  \
    __extension__({                                                           \
        uintptr_t psu_word_ = *(volatile const uintptr_t *)&(fn)->current;    \
        __asm__ volatile("" ::: "memory");                                    \
        psu_word_;                                                            \
    })
#else
#define psu_slot_acquire(fn) atomic_load_explicit(&(fn)->current, memory_order_acquire)
#endif

static __inline__ __attribute__((always_inline)) uintptr_t
psu_current(struct psu_function *fn)
{
    PSU_TEST_SLOT_READ(fn);
    return psu_slot_acquire(fn);
}

/* The slot word of a function whose current version is the executable's own:
 * module 0, which is never unloaded, and no address -- that version is the
 * function's own body, so comparing the slot with this constant at its entry
 * is the whole fast path (docs/memory-ordering.md, "Calls that count
 * nothing"). */
#define PSU_EXECUTABLE_VERSION ((uintptr_t)0)

/* The slot word of a function a bundle adds, until its first switch: current
 * nowhere (module 0 with an address no code has). */
#define PSU_NO_VERSION ((uintptr_t)PSU_CODE_ALIGN)

static __inline__ __attribute__((always_inline)) uintptr_t
psu_word(unsigned module, const void *code)
{
    return (uintptr_t)code | module;
}

static __inline__ __attribute__((always_inline)) unsigned
psu_word_module(uintptr_t word)
{
    return (unsigned)(word & (PSU_CODE_ALIGN - 1));
}

/* The entry check of each DSU function of the program: is the executable's
 * own version (the function's body) current?  A macro rather than a call of
 * psu_current, so that a debugger attributes the function's first
 * instructions -- and a breakpoint on the function -- to the user's file.
 * (A load, a test and a branch: `cmpq $0, slot(%rip)` in an asm goto is one
 * instruction fewer but more micro-ops -- a compare of memory with an
 * immediate does not fuse with its branch -- and measured slower in a
 * recursion of DSU calls, bench/call_overhead.py.) */
#define psu_executable_is_current(fn)                                         \
    (PSU_TEST_SLOT_READ(fn), psu_slot_acquire(fn) == PSU_EXECUTABLE_VERSION)

/* The entry check of a version compiled into a bundle, for the calls that
 * bundle's own code makes to it (codegen.py: a bundle calls the functions it
 * provides directly): is this version -- `self`, its code -- still the one
 * the slot names?  Then it runs its own body, counting nothing: the caller is
 * code of the same module, so this thread holds that module (a call into it
 * is further down its stack, docs/memory-ordering.md, "Calls that count
 * nothing").  Otherwise the call goes on to the program's function, whose
 * entry finds the newest version.  The code address alone names the module:
 * a module is mapped at its addresses until it is unloaded, and this one is
 * running. */
#ifdef PSU_TEST_BROKEN_SELF_CHECK
/* the bug the stress test must catch: a version that no longer asks */
#define psu_version_is_current(fn, self) ((void)(fn), (void)(self), 1)
#else
#define psu_version_is_current(fn, self)                                      \
    (PSU_TEST_SLOT_READ(fn),                                                  \
     (psu_slot_acquire(fn) & ~(uintptr_t)(PSU_CODE_ALIGN - 1)) == (uintptr_t)(self))
#endif

/* After the general path of a void DSU function.  In a function declared
 * noreturn (by _Noreturn or an attribute, on any of its declarations) control
 * cannot come back: say so to the compiler, and trap should a version return
 * after all rather than run on.  (gcc 9 and later can ask; elsewhere a
 * noreturn DSU function draws a warning.) */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9
/* (Naming a deprecated function to ask is no use of it: no warning.) */
#define psu_after_general_path(f)                                             \
    do {                                                                      \
        _Pragma("GCC diagnostic push")                                        \
        _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")      \
        if (__builtin_has_attribute(f, noreturn))                             \
            __builtin_trap();                                                 \
        _Pragma("GCC diagnostic pop")                                         \
    } while (0)
#else
#define psu_after_general_path(f) ((void)0)
#endif

/* A function the compiler may not look into: the general path calls the
 * function again through it, so the function's body is not inlined there
 * (its copy would keep registers busy on the general path's hot path). */
#if defined(__GNUC__) && !defined(PSU_PARSE_ONLY)
#define psu_opaque(f)                                                         \
    __extension__({ __typeof__(&(f)) psu_f_ = &(f); __asm__("" : "+r"(psu_f_)); psu_f_; })
#else
#define psu_opaque(f) (&(f))
#endif

/* The executable's version of a function, for its general path: past the
 * hook where the function has one (PSU_ENTRY_HOOK: 8 bytes), since the hook
 * may still jump to the general path -- the update thread restores it
 * before the slot goes back to the executable, but another thread can have
 * fetched the jump before that -- or could not be restored; otherwise the
 * function itself (psu_opaque).  `entry` is written only at start-up. */
#define psu_executable_version(fn, f)                                         \
    ((fn)->entry ? (__typeof__(&(f)))((uintptr_t)(fn)->entry + 8) : psu_opaque(f))

/* The code a slot word names; NULL for the executable's version. */
static __inline__ __attribute__((always_inline)) void *
psu_code(uintptr_t word)
{
    return (void *)(word & ~(uintptr_t)(PSU_CODE_ALIGN - 1));
}

/* What psu_enter_from decided for one call:
 *   code == NULL            the executable's version is current: the caller
 *                           calls it by name, nothing is counted;
 *   code, calls == NULL     a nested call: this thread already holds the
 *                           module (a call into it is further down its stack
 *                           and returns only after this one), so the code
 *                           stays loaded without a reference of its own;
 *   code, calls             a reference published on *calls: psu_leave. */
struct psu_call {
    void *code;
    _Atomic(uintptr_t) *calls;
};

/* `word` is the slot as the caller just read it. */
static __inline__ __attribute__((always_inline)) struct psu_call
psu_enter_from(struct psu_function *fn, uintptr_t word)
{
    struct psu_thread_record *self = psu_thread_record;
    if (__builtin_expect(!self, 0))
        self = psu_thread_register();
    for (;;) {
        if (word == PSU_EXECUTABLE_VERSION)
            return (struct psu_call){ NULL, NULL };
        unsigned module = psu_word_module(word);
        _Atomic(uintptr_t) *calls = &self->calls[module];
        /* Own counter, so exact (a fresh record's are all zero). */
        uintptr_t held = atomic_load_explicit(calls, memory_order_relaxed);
#ifdef PSU_TEST_BROKEN_NESTED
        held = 1;       /* the bug the stress test must catch: a hold not checked */
#endif
        if (held != 0) {
            /* Window 0: nothing published; updates may switch, scan and
             * unload meanwhile, but never this module (memory-ordering.md). */
            PSU_TEST_RACE_WINDOW();
            return (struct psu_call){ psu_code(word), NULL };
        }
        /* Window 1: slot read, reference not yet published.  An update may
         * switch, scan and unload here; the re-check below is what saves us. */
        PSU_TEST_RACE_WINDOW();
        /* The count is where the outermost counted call's frame is. */
        uintptr_t frame = psu_stack_pointer();
        if (__builtin_expect(psu_membarrier_ready, 1)) {
            atomic_store_explicit(calls, frame, memory_order_relaxed);
            /* (A) compiler-only barrier; pairs with the updater's membarrier (B). */
            atomic_signal_fence(memory_order_seq_cst);
        } else {
            /* Fallback: a locked RMW orders the count before the re-check;
             * pairs with the updater's seq_cst fence. */
            atomic_exchange_explicit(calls, frame, memory_order_seq_cst);
        }
        /* Window 2: reference published, slot not yet re-checked. */
        PSU_TEST_RACE_WINDOW();
#ifdef PSU_TEST_BROKEN_NO_RECHECK
        (void)fn;
        uintptr_t again = word;
#else
        uintptr_t again = atomic_load_explicit(&fn->current, memory_order_seq_cst);
#endif
        if (__builtin_expect(again == word, 1))
            return (struct psu_call){ psu_code(word), calls };
        /* Switched under our feet: withdraw the reference (the count was 0
         * before it) and take the new one. */
        atomic_store_explicit(calls, 0, memory_order_release);
        word = again;
    }
}

/* The two tests of psu_enter_fast, each a compare with memory and a branch
 * on x86-64 (the compiler will not fold an atomic load into a compare):
 *   psu_goto_unless_zero: this thread's own count (relaxed: exact);
 *   psu_goto_if_moved:    the re-check, a seq_cst load (a plain load on
 *                         x86-64), after the count's store and barrier (A):
 *                         the "memory" clobber keeps it there.
 * Elsewhere, and under ThreadSanitizer (which must see the loads), C. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(PSU_PARSE_ONLY)
#define psu_goto_unless_zero(counter, label)                                  \
    __asm__ goto("cmpq $0, %0\n\tjne %l1" : : "m"(*(counter)) : "cc" : label)
#define psu_goto_if_moved(fn, word, label)                                    \
    __asm__ goto("cmp %0, %1\n\tjne %l2" : : "r"(word), "m"((fn)->current) : "cc", "memory" : label)
#else
#define psu_goto_unless_zero(counter, label)                                  \
    do { if (atomic_load_explicit((counter), memory_order_relaxed) != 0) goto label; } while (0)
#define psu_goto_if_moved(fn, word, label)                                    \
    do {                                                                      \
        if (atomic_load_explicit(&(fn)->current, memory_order_seq_cst) != (word)) \
            goto label;                                                       \
    } while (0)
#endif

/* Where psu_enter_fast sends a call. */
enum psu_route {
    PSU_COUNTED,    /* a reference published on this thread's fast count: call, psu_leave_fast */
    PSU_NESTED,     /* this thread holds the module: call call->code, count nothing */
    PSU_SLOW        /* anything else: the general path's slow twin decides */
};

/* What psu_enter_fast decided for a counted or nested call: the code to
 * call and the module whose fast count a counted call holds. */
struct psu_fast_call {
    void *code;
    unsigned module;
};

/* psu_enter_from for the general path of a DSU function of the program:
 * the same protocol, in straight line, on this thread's psu_fast_calls, so
 * that the general path keeps only the module index across the call (each
 * access to the count is one %fs-relative instruction).
 * What it does not decide -- counts not enabled (PSU_UNREGISTERED), the
 * executable's version current again (module 0, always held, no code), or
 * the slot moved under a published count (withdrawn here) -- it leaves to
 * the slow twin: psu_enter there registers the thread and reads the slot
 * anew, as psu_enter_from's loop would.  (A route rather than a NULL test
 * of the result: each return's route is a constant the compiler branches
 * on.) */
static __inline__ __attribute__((always_inline)) enum psu_route
psu_enter_fast(struct psu_function *fn, uintptr_t word, struct psu_fast_call *call)
{
    unsigned module = psu_word_module(word);
    /* (The code address is taken from the word where each branch needs it,
     * after the re-check on the counted one: the word is then dead, so its
     * low byte is cleared in place.) */
#ifdef PSU_TEST_BROKEN_NESTED
    goto held;      /* the bug the stress test must catch: a hold not checked */
#endif
    psu_goto_unless_zero(&psu_fast_calls[module], held);
    PSU_TEST_RACE_WINDOW();         /* window 1 */
    /* The count: this frame's stack pointer (a relaxed store). */
    psu_store_stack_pointer(&psu_fast_calls[module]);
    /* (A) compiler-only barrier; pairs with the updater's membarrier (B). */
    atomic_signal_fence(memory_order_seq_cst);
    PSU_TEST_RACE_WINDOW();         /* window 2 */
#ifdef PSU_TEST_BROKEN_NO_RECHECK
    (void)fn;
#else
    psu_goto_if_moved(fn, word, moved);
#endif
    call->code = psu_code(word);
    call->module = module;
    return PSU_COUNTED;
held:
    PSU_TEST_RACE_WINDOW();         /* window 0, as in psu_enter_from */
    call->code = psu_code(word);
#ifdef PSU_TEST_BROKEN_NESTED
    if (call->code != NULL)
        return PSU_NESTED;
#endif
    /* Own count: exact.  (PSU_UNREGISTERED: not enabled.  No code: module 0.) */
    if (__builtin_expect(psu_count_load(&psu_fast_calls[module]) != PSU_UNREGISTERED &&
                         call->code != NULL, 1))
        return PSU_NESTED;
    return PSU_SLOW;
#ifndef PSU_TEST_BROKEN_NO_RECHECK
moved:
    /* Switched under our feet: withdraw (release, as psu_leave). */
    psu_count_release_zero(&psu_fast_calls[module]);
    return PSU_SLOW;
#endif
}

/* The end of a counted call psu_enter_fast began: as psu_leave. */
static __inline__ __attribute__((always_inline)) void
psu_leave_fast(struct psu_fast_call call)
{
    psu_count_release_zero(&psu_fast_calls[call.module]);
}

static __inline__ __attribute__((always_inline)) struct psu_call
psu_enter(struct psu_function *fn)
{
    return psu_enter_from(fn, psu_current(fn));
}


static __inline__ __attribute__((always_inline)) void
psu_leave(struct psu_call call)
{
    if (!call.calls)
        return;     /* nothing was counted */
    /* Release: everything this call did in the module happens-before the
     * update thread's acquire load that finds the count back at zero.  A
     * counted call found the count 0 and made it its stack pointer (nested
     * calls count nothing), so it leaves it 0. */
    atomic_store_explicit(call.calls, 0, memory_order_release);
}

#endif /* PSU_FAST_H */
