/* psu_runtime.c - the runtime's core: start-up, the thread registry, the
 * function table, the module table, the switch and the unload decision.
 *
 * The argument for why this is safe is written out in
 * docs/memory-ordering.md; comments name its barriers (A) and (B). */
#define _GNU_SOURCE
/* The runtime defines longjmp and __longjmp_chk: fortify's redirection of
 * longjmp to __longjmp_chk must not rename our definitions. */
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <linux/membarrier.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "psu_internal.h"

/* ---- the fast path's shared variables (declared in psu_fast.h) -------- */

/* Written once by psu_start (constructor, before the update thread exists);
 * read by every DSU call and by psu_switch_barrier. */
int psu_membarrier_ready;

/* ---- errors and messages ---------------------------------------------- */

void psu_die_at(const char *file, const char *func, int line, int err, const char *what)
{
    fprintf(stderr, "psu[%d]: internal error at %s:%s:%d: %s: %s\n",
            (int)getpid(), file, func, line, what, strerror(err));
    abort();
}

static bool quiet(void)
{
    const char *q = getenv("PSU_QUIET");
    return q && strcmp(q, "1") == 0;
}

void psu_log(const char *fmt, ...)
{
    if (quiet())
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "psu[%d]: %s\n", (int)getpid(), line);
}

void psu_error_set(struct psu_error *err, const char *class, const char *fmt, ...)
{
    err->class = class;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* ---- locks -------------------------------------------------------------- */

pthread_mutex_t psu_update_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t psu_module_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t psu_client_lock = PTHREAD_MUTEX_INITIALIZER;

void psu_lock(pthread_mutex_t *m)
{
    int e = pthread_mutex_lock(m);
    if (e)
        psu_die(e, "pthread_mutex_lock");
}

void psu_unlock(pthread_mutex_t *m)
{
    int e = pthread_mutex_unlock(m);
    if (e)
        psu_die(e, "pthread_mutex_unlock");
}

/* ---- membarrier ------------------------------------------------------- */

static int membarrier(int cmd, unsigned flags)
{
    return (int)syscall(SYS_membarrier, cmd, flags, 0);
}

/* Probes and registers PRIVATE_EXPEDITED; psu_membarrier_ready only on
 * success, otherwise callers use the locked add and we the seq_cst fence. */
static void membarrier_probe(void)
{
    int supported = membarrier(MEMBARRIER_CMD_QUERY, 0);
    if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return;
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) != 0)
        return;
    psu_membarrier_ready = 1;
}

void psu_switch_barrier(void)
{
    if (psu_membarrier_ready) {
        /* (B): a full barrier on every running thread of the process; pairs
         * with the compiler-only barrier (A) in psu_enter.  Threads not
         * running pass a full barrier at their next context switch. */
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) != 0)
            psu_die(errno, "membarrier(PRIVATE_EXPEDITED)");
    } else {
        /* Fallback (B'): pairs with psu_enter's seq_cst fetch_add; with the
         * seq_cst exchanges before it, either the caller's re-check sees the
         * new slot or our later scan sees its increment. */
        atomic_thread_fence(memory_order_seq_cst);
    }
}

/* ---- entry hooks --------------------------------------------------------- */

/* While a bundle's version of a function of the executable is current, the
 * hook at the function's entry (PSU_ENTRY_HOOK, psu_fast.h) is a jump to its
 * general path, or to its stub ("entry stubs" below): calls that reach the
 * entry go there before the function's prologue and its slot check.  The hook is an acceleration only: the body
 * still checks the slot (its inlined and cloned copies have no hook), so a
 * thread that runs the hook's old bytes, or a function whose hook cannot be
 * written, takes the check, which reads the same slot.  A hook is one
 * instruction of 8 aligned bytes, replaced by one 8-byte compare-and-swap: a
 * thread fetches the old instruction or the new one, never a mix, and is
 * never inside it; and bytes that are neither the idle hook nor our jump (a
 * debugger's breakpoint) are left alone.  The executable's text is made
 * writable for that store only (docs/memory-ordering.md, "Entry hooks"). */
static const uint64_t entry_hook_idle = 0x0000000000841f0full;  /* nopl 0x0(%rax,%rax,1) */
static bool entry_hooks_on;
/* Where the executable's records lie: only those have `entry` and `general`
 * (a bundle's state object made by an older psu has records without them). */
static uintptr_t executable_records_low, executable_records_high;
static char entry_hooks_off[96] = "not probed";
static uintptr_t page_size;

static void entry_hooks_probe(void)
{
    const char *setting = getenv("PSU_ENTRY_HOOKS");
    if (setting && strcmp(setting, "0") == 0) {
        snprintf(entry_hooks_off, sizeof entry_hooks_off, "PSU_ENTRY_HOOKS=0");
        return;
    }
#ifdef __SANITIZE_THREAD__
    /* It has no shadow for the program's text to check the hooks' writes by. */
    snprintf(entry_hooks_off, sizeof entry_hooks_off, "ThreadSanitizer");
    return;
#endif
    /* Restoring a hook is followed by a core-serialising barrier, so that no
     * thread runs a stale jump once its slot is back at the executable. */
    int supported = membarrier(MEMBARRIER_CMD_QUERY, 0);
    if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) ||
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0) != 0) {
        snprintf(entry_hooks_off, sizeof entry_hooks_off, "no membarrier(PRIVATE_EXPEDITED_SYNC_CORE)");
        return;
    }
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    entry_hooks_on = true;
}

const char *psu_entry_hooks_off(void)
{
    return entry_hooks_on ? NULL : entry_hooks_off;
}

static uint64_t *entry_bytes(const struct psu_function *fn)
{
    return (uint64_t *)(uintptr_t)fn->entry;
}

/* A function whose entry does not hold the idle hook (an object the build
 * did not rewrite, another compiler's padding, a breakpoint) keeps no entry:
 * nothing is ever written there, and its general path's slow twin calls the
 * function itself rather than past the hook.  At start-up, before any
 * update, for each of the executable's records (whose extent it notes). */
static void entry_hook_verify(struct psu_function *fn)
{
    uintptr_t at = (uintptr_t)fn;
    if (!executable_records_low || at < executable_records_low)
        executable_records_low = at;
    if (at > executable_records_high)
        executable_records_high = at;
    if (fn->entry && (((uintptr_t)fn->entry & 7) != 0 ||
                      __atomic_load_n(entry_bytes(fn), __ATOMIC_RELAXED) != entry_hook_idle))
        fn->entry = NULL;
}

static bool entry_hooked(const struct psu_function *fn)
{
    return (uintptr_t)fn >= executable_records_low && (uintptr_t)fn <= executable_records_high &&
           fn->entry;
}

/* `jmp target` in the hook's 8 bytes (the 3 after it are never run); 0 if
 * the target is out of a jump's reach. */
static uint64_t entry_jump_to(const struct psu_function *fn, uintptr_t target)
{
    intptr_t distance = (intptr_t)target - ((intptr_t)(uintptr_t)fn->entry + 5);
    if (distance != (int32_t)distance)
        return 0;
    return 0xe9u | (uint64_t)(uint32_t)(int32_t)distance << 8 | 0xccccccull << 40;
}

static uint64_t entry_hook_jump(const struct psu_function *fn)
{
    return entry_jump_to(fn, (uintptr_t)fn->general);
}

/* Makes the pages of the program's text holding [low, end) writable (and
 * still executable: other threads run there meanwhile), or read-only again;
 * dies if they cannot be made read-only again.  False if not writable. */
static bool text_writable(uintptr_t low, uintptr_t end, bool writable)
{
    uintptr_t first = low & ~(page_size - 1);
    size_t length = ((end - first) + page_size - 1) & ~(page_size - 1);
    int protection = PROT_READ | PROT_EXEC | (writable ? PROT_WRITE : 0);
    if (mprotect((void *)first, length, protection) == 0)
        return true;
    if (!writable)
        psu_die(errno, "mprotect (the program's text made read-only again)");
    return false;
}

/* The same for the entries [low, high]; a failure to make them writable
 * turns hooks off, saying why. */
static bool entry_text_writable(uintptr_t low, uintptr_t high, bool writable)
{
    if (text_writable(low, high + 8, writable))
        return true;
    snprintf(entry_hooks_off, sizeof entry_hooks_off, "mprotect of the program's text: %s",
             strerror(errno));
    entry_hooks_on = false;
    psu_log("entry hooks off: %s", entry_hooks_off);
    return false;
}

/* ---- entry stubs ---- */

/* While module m's version of a function of the executable is current, the
 * function's hook jumps to a stub made for (function, m) rather than to its
 * general path: the general path's counted call with the slot, the module
 * and the place of its fast count as constants, so that it loads no slot
 * word before counting and takes no index or address out of one:
 *
 *     push (alignment); count m non-zero? held;  count m := sp (A);
 *     slot's module byte still m? else moved;  call *cell;  count m := 0;
 *     pop; ret
 *   held:  pop; count m is PSU_UNREGISTERED? jmp general;  jmp *cell
 *   moved: count m := 0; pop; jmp general
 *
 * `cell` (in the stub) is the code of the version module m provides, stored
 * before the slot can name m.  The re-check compares the slot's module byte
 * only: a count on m pins whatever module holds index m, and the cell, read
 * after the re-check, is that module's version whenever the slot names m
 * (stored before the slot; loads are not reordered on x86-64).  A nested
 * call (count m held) reaches the stub only while m's module is the one the
 * hook was written for, whose version the cell holds.  A stub is written
 * once, and only its cell again, when index m is reused by a module whose
 * version of the function becomes current.  Anything else goes to the
 * general path, which decides as before (docs/memory-ordering.md, "Entry
 * stubs").  The area is in the executable's text, a jump's reach from every
 * entry, slot and general path; its one unwind rule, CFA = rsp + 16, holds
 * at the return address of the call, so debuggers and the unwinder see
 * through a stub to its caller.  The area full, hooks jump to the general
 * path as before. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(PSU_NO_ENTRY_STUBS)
#define PSU_ENTRY_STUBS 1
#define PSU_STUB_SIZE 128
/* Only the runtime's tests build with fewer, to fill the area quickly. */
#ifndef PSU_STUB_COUNT
#define PSU_STUB_COUNT 512
#endif
#define PSU_STR_(x) #x
#define PSU_STR(x) PSU_STR_(x)
/* The template's fields, each named by the label at the end of its
 * instruction: the count's %fs offset, the slot (rel32, and the module
 * byte), the general path (rel32) and the cell (rel32). */
__asm__(".pushsection .text.psu_stub_area,\"ax\",@progbits\n"
        ".p2align 12\n"
        ".globl psu_stub_area\n.hidden psu_stub_area\n.type psu_stub_area, @function\n"
        "psu_stub_area:\n"
        ".cfi_startproc\n"
        ".cfi_def_cfa_offset 16\n"
        ".fill " PSU_STR(PSU_STUB_SIZE * PSU_STUB_COUNT) ", 1, 0xcc\n"
        ".cfi_endproc\n"
        ".size psu_stub_area, " PSU_STR(PSU_STUB_SIZE * PSU_STUB_COUNT) "\n"
        ".popsection\n"
        ".pushsection .rodata.psu_stub_template,\"a\",@progbits\n"
        ".globl psu_stub_template\n.hidden psu_stub_template\n"
        "psu_stub_template:\n"
        "  push %rax\n"
        "  cmpq $0, %fs:0x7ffffff0\n"
        "psu_stub_count1:\n"
        "  jne 1f\n"
        "  mov %rsp, %fs:0x7ffffff0\n"
        "psu_stub_count2:\n"
        "  cmpb $0x7f, 0(%rip)\n"
        "psu_stub_slot:\n"
        "  jne 2f\n"
        "  call *0(%rip)\n"
        "psu_stub_call:\n"
        "  movq $0, %fs:0x7ffffff0\n"
        "psu_stub_count3:\n"
        "  pop %r11\n"
        "  ret\n"
        "1:\n"
        "  pop %r11\n"
        "  cmpq $2, %fs:0x7ffffff0\n"
        "psu_stub_count4:\n"
        "  .byte 0x0f, 0x84\n  .long 0\n"
        "psu_stub_general1:\n"
        "  jmp *0(%rip)\n"
        "psu_stub_jump:\n"
        "2:\n"
        "  movq $0, %fs:0x7ffffff0\n"
        "psu_stub_count5:\n"
        "  pop %r11\n"
        "  .byte 0xe9\n  .long 0\n"
        "psu_stub_general2:\n"
        "  .p2align 3\n"
        "psu_stub_cell:\n"
        "  .quad 0\n"
        "psu_stub_end:\n"
        ".irp l, count1, count2, slot, call, count3, count4, general1, jump, count5, general2, cell, end\n"
        ".globl psu_stub_\\l\n.hidden psu_stub_\\l\n"
        ".endr\n"
        ".popsection\n");
#define PSU_STUB_LABEL __attribute__((visibility("hidden"))) extern const unsigned char
PSU_STUB_LABEL psu_stub_area[], psu_stub_template[], psu_stub_count1[], psu_stub_count2[],
    psu_stub_slot[], psu_stub_call[], psu_stub_count3[], psu_stub_count4[], psu_stub_general1[],
    psu_stub_jump[], psu_stub_count5[], psu_stub_general2[], psu_stub_cell[], psu_stub_end[];
#define STUB_AREA_SIZE ((size_t)PSU_STUB_SIZE * PSU_STUB_COUNT)
_Static_assert(PSU_STUB_SIZE % 8 == 0, "a stub's cell is 8-aligned");
_Static_assert((PSU_STUB_COUNT & (PSU_STUB_COUNT - 1)) == 0, "the stub table's mask");

static bool entry_stubs_on;
static char entry_stubs_off[96] = "not probed";
/* %fs offset of psu_fast_calls[0] (static TLS of the executable). */
static intptr_t fast_calls_tls_offset;
static size_t stubs_used;

/* (function, module index) -> its stub; open addressing, never removed.
 * Used by the update thread only (under psu_update_lock). */
struct stub_entry {
    const struct psu_function *fn;
    unsigned module;
    unsigned char *stub;
};
static struct stub_entry stub_table[PSU_STUB_COUNT * 2];

static struct stub_entry *stub_find(const struct psu_function *fn, unsigned module)
{
    size_t mask = sizeof stub_table / sizeof stub_table[0] - 1;
    size_t i = (((uintptr_t)fn >> 3) * 31 + module) & mask;
    while (stub_table[i].fn && (stub_table[i].fn != fn || stub_table[i].module != module))
        i = (i + 1) & mask;
    return &stub_table[i];
}

static int object_of_address(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t address = *(uintptr_t *)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && address >= start && address < start + ph->p_memsz)
            return 1;
    }
    return -1;  /* the first object is the executable: stop there */
}

/* Stubs need entry hooks and psu_fast_calls at a constant %fs offset: the
 * runtime linked into the executable (whose TLS block is static), not into
 * a shared object (the in-process tests). */
static void entry_stubs_probe(void)
{
    const char *setting = getenv("PSU_ENTRY_STUBS");
    uintptr_t here = (uintptr_t)(void *)entry_stubs_probe;
    if (!entry_hooks_on)
        snprintf(entry_stubs_off, sizeof entry_stubs_off, "entry hooks off");
    else if (setting && strcmp(setting, "0") == 0)
        snprintf(entry_stubs_off, sizeof entry_stubs_off, "PSU_ENTRY_STUBS=0");
    else if (!psu_membarrier_ready)
        snprintf(entry_stubs_off, sizeof entry_stubs_off, "no membarrier(PRIVATE_EXPEDITED)");
    else if (dl_iterate_phdr(object_of_address, &here) != 1)
        snprintf(entry_stubs_off, sizeof entry_stubs_off, "runtime not in the executable");
    else {
        uintptr_t thread_pointer;
        __asm__("mov %%fs:0, %0" : "=r"(thread_pointer));
        fast_calls_tls_offset = (intptr_t)(uintptr_t)&psu_fast_calls[0] - (intptr_t)thread_pointer;
        entry_stubs_on = fast_calls_tls_offset == (int32_t)fast_calls_tls_offset &&
                         fast_calls_tls_offset + 8 * PSU_MAX_MODULES == (int32_t)(fast_calls_tls_offset + 8 * PSU_MAX_MODULES);
        if (!entry_stubs_on)
            snprintf(entry_stubs_off, sizeof entry_stubs_off, "fast counts out of reach");
    }
}

static bool stub_in_area(uintptr_t target)
{
    return target >= (uintptr_t)psu_stub_area && target < (uintptr_t)psu_stub_area + STUB_AREA_SIZE;
}

static void put32(unsigned char *at, int32_t value)
{
    memcpy(at, &value, sizeof value);
}

/* The offset of a template label's field, from the template's start. */
#define FIELD(label, back) ((size_t)((label) - psu_stub_template) - (back))

/* Writes the stub for (fn, module) at `stub` (writable), calling `code`. */
static bool stub_write(unsigned char *stub, const struct psu_function *fn, unsigned module,
                       uintptr_t code)
{
    size_t length = (size_t)(psu_stub_end - psu_stub_template);
    unsigned char bytes[PSU_STUB_SIZE];
    if (length > sizeof bytes)
        return false;
    memset(bytes, 0xcc, sizeof bytes);
    memcpy(bytes, psu_stub_template, length);
    intptr_t count = fast_calls_tls_offset + 8 * (intptr_t)module;
    size_t counts[] = { FIELD(psu_stub_count1, 5), FIELD(psu_stub_count2, 4),
                        FIELD(psu_stub_count3, 8), FIELD(psu_stub_count4, 5),
                        FIELD(psu_stub_count5, 8) };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        put32(bytes + counts[i], (int32_t)count);
    /* rel32 fields: `at` in the stub, relative to the end of their
     * instruction (the slot's is followed by the module byte). */
    uintptr_t cell = (uintptr_t)(stub + FIELD(psu_stub_cell, 0));
    struct { size_t at, end; uintptr_t target; } relative[] = {
        { FIELD(psu_stub_slot, 5), FIELD(psu_stub_slot, 0), (uintptr_t)&fn->current },
        { FIELD(psu_stub_call, 4), FIELD(psu_stub_call, 0), cell },
        { FIELD(psu_stub_jump, 4), FIELD(psu_stub_jump, 0), cell },
        { FIELD(psu_stub_general1, 4), FIELD(psu_stub_general1, 0), (uintptr_t)fn->general },
        { FIELD(psu_stub_general2, 4), FIELD(psu_stub_general2, 0), (uintptr_t)fn->general },
    };
    for (size_t i = 0; i < sizeof relative / sizeof relative[0]; i++) {
        intptr_t distance = (intptr_t)relative[i].target - (intptr_t)(uintptr_t)(stub + relative[i].end);
        if (distance != (int32_t)distance)
            return false;
        put32(bytes + relative[i].at, (int32_t)distance);
    }
    bytes[FIELD(psu_stub_slot, 1)] = (unsigned char)module;
    memcpy(bytes + FIELD(psu_stub_cell, 0), &code, sizeof code);
#ifdef PSU_TEST_BROKEN_STUB
    /* the bug the stress test must catch: a stub that calls the version
     * without counting (jmp *cell first) */
    bytes[0] = 0xff;
    bytes[1] = 0x25;
    put32(bytes + 2, (int32_t)((intptr_t)cell - (intptr_t)(uintptr_t)(stub + 6)));
#endif
    memcpy(stub, bytes, sizeof bytes);
    return true;
}

/* Where a switched function's hook jumps: its stub, else its general path. */
static uintptr_t entry_target(const struct psu_switch_item *item)
{
    if (entry_stubs_on) {
        struct stub_entry *e = stub_find(item->fn, psu_word_module(item->new_word));
        if (e->fn)
            return (uintptr_t)e->stub;
    }
    return (uintptr_t)item->fn->general;
}

static bool entry_going_to_bundle(const struct psu_switch_item *item);

/* Before a switch, for the functions going to a bundle's version: the stub
 * of (function, module) made, or its cell set to the version's code, before
 * the slot can name the module; new stubs are serialised for every thread
 * before any hook can jump to them. */
static void entry_stubs_prepare(const struct psu_switch_item *items, size_t n)
{
    if (!entry_stubs_on)
        return;
    bool writable = false, made = false;
    for (size_t i = 0; i < n; i++) {
        const struct psu_function *fn = items[i].fn;
        if (!entry_going_to_bundle(&items[i]))
            continue;
        unsigned module = psu_word_module(items[i].new_word);
        uintptr_t code = (uintptr_t)psu_code(items[i].new_word);
        struct stub_entry *e = stub_find(fn, module);
        if (e->fn && memcmp(e->stub + FIELD(psu_stub_cell, 0), &code, sizeof code) == 0)
            continue;
        if (!e->fn && stubs_used == PSU_STUB_COUNT)
            continue;       /* full: the general path */
        if (!writable) {
            if (!text_writable((uintptr_t)psu_stub_area, (uintptr_t)psu_stub_area + STUB_AREA_SIZE,
                               true)) {
                snprintf(entry_stubs_off, sizeof entry_stubs_off, "mprotect of the stub area: %s",
                         strerror(errno));
                entry_stubs_on = false;
                psu_log("entry stubs off: %s", entry_stubs_off);
                return;
            }
            writable = true;
        }
        if (e->fn) {
            /* Index reused: only the cell (an aligned 8-byte store). */
            __atomic_store_n((uintptr_t *)(void *)(e->stub + FIELD(psu_stub_cell, 0)), code,
                             __ATOMIC_RELEASE);
            continue;
        }
        unsigned char *stub = (unsigned char *)psu_stub_area + stubs_used * PSU_STUB_SIZE;
        if (!stub_write(stub, fn, module, code))
            continue;
        *e = (struct stub_entry){ fn, module, stub };
        stubs_used++;
        made = true;
    }
    if (!writable)
        return;
    text_writable((uintptr_t)psu_stub_area, (uintptr_t)psu_stub_area + STUB_AREA_SIZE, false);
    if (made && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0) != 0)
        psu_die(errno, "membarrier(PRIVATE_EXPEDITED_SYNC_CORE)");
}
#else
static const bool entry_stubs_on = false;
static const char entry_stubs_off[] = "not built (x86-64 only, not under ThreadSanitizer)";
static void entry_stubs_probe(void) {}
static bool stub_in_area(uintptr_t target) { (void)target; return false; }
static uintptr_t entry_target(const struct psu_switch_item *item)
{
    return (uintptr_t)item->fn->general;
}
static void entry_stubs_prepare(const struct psu_switch_item *items, size_t n)
{
    (void)items;
    (void)n;
}
#endif

const char *psu_entry_stubs_off(void)
{
    if (!entry_hooks_on)
        return "entry hooks off";
    return entry_stubs_on ? NULL : entry_stubs_off;
}

/* Whether `bytes` at fn's entry are ours: the idle hook, or a jump to its
 * general path or into the stub area.  Anything else (a debugger's
 * breakpoint) is never overwritten. */
static bool entry_ours(const struct psu_function *fn, uint64_t bytes)
{
    if (bytes == entry_hook_idle)
        return true;
    if ((bytes & 0xff) != 0xe9 || bytes >> 40 != 0xcccccc)
        return false;
    uintptr_t target = (uintptr_t)fn->entry + 5 + (intptr_t)(int32_t)(uint32_t)(bytes >> 8);
    return target == (uintptr_t)fn->general || stub_in_area(target);
}

/* The hook of each switched function that `wanted` selects, replaced by
 * `to(item)` with an 8-byte compare-and-swap from the bytes found there, if
 * they are ours.  One mprotect each way for the whole batch (the text
 * between its first and last entry).  Returns how many it wrote. */
static size_t entry_writes(const struct psu_switch_item *items, size_t n,
                           bool (*wanted)(const struct psu_switch_item *),
                           uint64_t (*to)(const struct psu_switch_item *))
{
    uintptr_t low = UINTPTR_MAX, high = 0;
    for (size_t i = 0; i < n; i++) {
        const struct psu_function *fn = items[i].fn;
        if (!wanted(&items[i]))
            continue;
        uint64_t bytes = __atomic_load_n(entry_bytes(fn), __ATOMIC_RELAXED);
        if (entry_ours(fn, bytes) && bytes != to(&items[i])) {
            uintptr_t at = (uintptr_t)fn->entry;
            low = at < low ? at : low;
            high = at > high ? at : high;
        }
    }
    if (high == 0 || !entry_text_writable(low, high, true))
        return 0;
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        const struct psu_function *fn = items[i].fn;
        /* (A locked compare-and-swap writes even when it fails: only entries
         * inside the writable range, which held our bytes a moment ago.) */
        uintptr_t at = (uintptr_t)fn->entry;
        if (!wanted(&items[i]) || at < low || at > high)
            continue;
        uint64_t expected = __atomic_load_n(entry_bytes(fn), __ATOMIC_RELAXED);
        uint64_t desired = to(&items[i]);
        if (entry_ours(fn, expected) && expected != desired &&
            __atomic_compare_exchange_n(entry_bytes(fn), &expected, desired, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            written++;
    }
    entry_text_writable(low, high, false);
    return written;
}

static uint64_t entry_idle(const struct psu_switch_item *item)
{
    (void)item;
    return entry_hook_idle;
}

static uint64_t entry_jump(const struct psu_switch_item *item)
{
    uint64_t jump = entry_jump_to(item->fn, entry_target(item));
    return jump ? jump : entry_hook_jump(item->fn);
}

static bool entry_going_to_executable(const struct psu_switch_item *item)
{
    return entry_hooked(item->fn) && item->new_word == PSU_EXECUTABLE_VERSION &&
           entry_hook_jump(item->fn) != 0;
}

static bool entry_going_to_bundle(const struct psu_switch_item *item)
{
    return entry_hooks_on && entry_hooked(item->fn) && item->new_word != PSU_EXECUTABLE_VERSION &&
           entry_hook_jump(item->fn) != 0;
}

/* Before a switch: the functions going back to the executable's version get
 * their idle hook back, and every thread serialises, before their slots
 * change.  (Their general paths call the executable's version past the
 * hook anyway: psu_executable_version.) */
static void entry_hooks_restore(const struct psu_switch_item *items, size_t n)
{
    if (entry_writes(items, n, entry_going_to_executable, entry_idle) &&
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0) != 0)
        psu_die(errno, "membarrier(PRIVATE_EXPEDITED_SYNC_CORE)");
}

/* After a switch: a function now at a bundle's version jumps from its entry
 * to its stub for that version's module, or to its general path.  (From
 * another bundle's stub the jump may be one switch late: that stub's
 * re-check sends such calls to the general path.) */
static void entry_hooks_set(const struct psu_switch_item *items, size_t n)
{
    entry_writes(items, n, entry_going_to_bundle, entry_jump);
}

/* ---- thread records ----------------------------------------------------- */

/* Records come in chunks mapped with mmap and never unmapped, linked on a
 * list that only grows (a CAS on its head).  A thread claims a free record
 * with a CAS on its owner (0 -> its tid), so registration takes no lock and
 * allocates nothing from malloc: a signal handler may run it, or interrupt
 * it and run it again (docs/memory-ordering.md, "Thread records"). */
#define RECORDS_PER_CHUNK 64

struct record_chunk {
    struct psu_thread_record records[RECORDS_PER_CHUNK];
    struct record_chunk *next;          /* immutable once published */
};

/* Head of the chunk list.  Pushed with a release CAS; walked with acquire
 * loads (pairs: a walker sees a chunk's initialised records). */
static _Atomic(struct record_chunk *) record_chunks;

static long current_tid(void)
{
    return (long)syscall(SYS_gettid);
}

/* True when thread `tid` of this process has exited (the kernel no longer
 * knows it).  A live thread of the same tid (reuse) reads as alive: its
 * dead predecessor's record is only reclaimed later, never too early. */
static bool thread_exited(long tid)
{
    return syscall(SYS_tgkill, (long)getpid(), tid, 0) != 0 && errno == ESRCH;
}

/* Drops the record of a thread known to have exited: its counts go (a thread
 * that exits inside a DSU call, by pthread_exit, no longer pins the module)
 * and the record becomes free.  Only the CAS winner touches the counts, so
 * two reclaimers never race, and no owner can exist meanwhile. */
static bool reclaim_if_exited(struct psu_thread_record *r)
{
    /* Acquire: pairs with the claimer's CAS; reads a settled owner. */
    long tid = atomic_load_explicit(&r->owner, memory_order_acquire);
    if (tid <= 0 || !thread_exited(tid))
        return false;
    /* acq_rel: one reclaimer wins; pairs with other reclaimers' CAS. */
    if (!atomic_compare_exchange_strong_explicit(&r->owner, &tid, -1, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return false;
    for (unsigned i = 0; i < PSU_MAX_MODULES; i++)
        /* Release: pairs with the scan's acquire load, as psu_leave's. */
        atomic_store_explicit(&r->calls[i], 0, memory_order_release);
    /* Its fast counts go with it (a thread that retired them cleared this
     * itself; one that did not -- the main thread -- has TLS that stays). */
    atomic_store_explicit(&r->fast, NULL, memory_order_relaxed);
    /* Release: a claimer's acquire CAS sees the zeroed counts. */
    atomic_store_explicit(&r->owner, 0, memory_order_release);
    return true;
}

static unsigned reclaim_exited_threads(void)
{
    unsigned n = 0;
    for (struct record_chunk *c = atomic_load_explicit(&record_chunks, memory_order_acquire);
         c; c = c->next)
        for (unsigned i = 0; i < RECORDS_PER_CHUNK; i++)
            n += reclaim_if_exited(&c->records[i]);
    return n;
}

static struct psu_thread_record *claim_record(long tid)
{
    for (int round = 0;; round++) {
        for (struct record_chunk *c = atomic_load_explicit(&record_chunks, memory_order_acquire);
             c; c = c->next) {
            for (unsigned i = 0; i < RECORDS_PER_CHUNK; i++) {
                struct psu_thread_record *r = &c->records[i];
                long expected = 0;
                /* Relaxed peek, then the CAS (acq_rel) that claims: pairs
                 * with the release of the record by a reclaimer or a
                 * registration that lost its TLS CAS (zeroed counts seen). */
                if (atomic_load_explicit(&r->owner, memory_order_relaxed) == 0 &&
                    atomic_compare_exchange_strong_explicit(&r->owner, &expected, tid,
                                                            memory_order_acq_rel,
                                                            memory_order_relaxed))
                    return r;
            }
        }
        if (round == 0 && reclaim_exited_threads() > 0)
            continue;
        /* mmap: a system call, no lock of the C library (async-signal-safe in
         * practice, as on every libc psu runs on). */
        struct record_chunk *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED)
            psu_die(errno, "mapping thread records");
        /* Relaxed: the chunk is not published yet; the push's release CAS
         * below orders this before any walker sees it. */
        atomic_store_explicit(&c->records[0].owner, tid, memory_order_relaxed);
        struct record_chunk *head = atomic_load_explicit(&record_chunks, memory_order_relaxed);
        do
            c->next = head;
        /* Release: the chunk's contents before its publication; pairs with
         * the walkers' acquire loads. */
        while (!atomic_compare_exchange_weak_explicit(&record_chunks, &head, c,
                                                      memory_order_release,
                                                      memory_order_relaxed));
        return &c->records[0];
    }
}

_Thread_local struct psu_thread_record *psu_thread_record PSU_TLS;

/* ---- fast counts (psu_fast.h) ---- */

/* The initial image of every thread's TLS: no fast count enabled. */
__extension__ _Thread_local _Atomic(uintptr_t) psu_fast_calls[PSU_MAX_MODULES] PSU_TLS = {
    [0 ... PSU_MAX_MODULES - 1] = PSU_UNREGISTERED,
};

/* Whether the runtime sees this thread end before its TLS can be freed, so
 * that the update thread may read its fast counts: the main thread (its TLS
 * is never freed) and threads made by pthread_create (start_thread retires
 * their counts).  A thread the C library makes for itself (a SIGEV_THREAD
 * timer's) counts on its record only, through the slow twin. */
static _Thread_local bool fast_calls_allowed PSU_TLS;

/* Held by the scan while it reads other threads' fast counts, and by a
 * thread that retires its own: once a retirement has returned, no scan
 * reads that TLS again.  Innermost: taken with any other lock held, and
 * with no other taken under it. */
static pthread_mutex_t fast_calls_lock = PTHREAD_MUTEX_INITIALIZER;

/* Enables this thread's fast counts on its record `r` (async-signal-safe:
 * stores only).  Published first, so that the update thread reads every
 * count this thread can make; the scan takes a count still PSU_UNREGISTERED
 * for no call.  A handler that interrupts and finds them published leaves
 * the rest to us: until each count is 0 its calls take the slow twin. */
static void fast_calls_enable(struct psu_thread_record *r)
{
    if (!psu_membarrier_ready || !fast_calls_allowed ||
        atomic_load_explicit(&r->fast, memory_order_relaxed))
        return;
    /* Release: pairs with the scan's acquire load of `fast`. */
    atomic_store_explicit(&r->fast, psu_fast_calls, memory_order_release);
    /* Relaxed: own counts; the first counted call's store is ordered for
     * the update thread by (A)/(B), as on a record. */
    atomic_store_explicit(&psu_fast_calls[0], 1, memory_order_relaxed);
    for (unsigned m = 1; m < PSU_MAX_MODULES; m++)
        atomic_store_explicit(&psu_fast_calls[m], 0, memory_order_relaxed);
}

/* At the end of a thread made by pthread_create (its function returned,
 * or pthread_exit or cancellation unwound it): no frame of it is left, so
 * no count holds anything.  Counts first -- a later DSU call (a TLS
 * destructor's, a handler's) finds them PSU_UNREGISTERED and counts on the
 * record -- then unpublished under the scan's lock. */
static void fast_calls_retire(void *unused)
{
    (void)unused;
    fast_calls_allowed = false;
    for (unsigned m = 0; m < PSU_MAX_MODULES; m++)
        atomic_store_explicit(&psu_fast_calls[m], PSU_UNREGISTERED, memory_order_relaxed);
    struct psu_thread_record *r = psu_thread_record;
#ifdef PSU_TEST_BROKEN_RETIRE
    r = NULL;       /* the bug the stress test must catch: counts left published */
#endif
    if (!r)
        return;
    psu_lock(&fast_calls_lock);
    atomic_store_explicit(&r->fast, NULL, memory_order_relaxed);
    psu_unlock(&fast_calls_lock);
}

/* Test hook: the fault suite raises a signal in the middle of registration. */
#ifndef PSU_TEST_REGISTER_HOOK
#define PSU_TEST_REGISTER_HOOK() ((void)0)
#endif

struct psu_thread_record *psu_thread_register(void)
{
    struct psu_thread_record *self = psu_thread_record;
    if (self) {
        /* a handler that interrupted us finished first */
        fast_calls_enable(self);
        return self;
    }
    int saved_errno = errno;
    struct psu_thread_record *r = claim_record(current_tid());
    PSU_TEST_REGISTER_HOOK();
    /* The executable is always held (psu_fast.h): set before the record is
     * published, so our handlers see it set too.  Relaxed: own count. */
    atomic_store_explicit(&r->calls[0], 1, memory_order_relaxed);
    /* A handler that ran since our first load may have registered us: the
     * CAS on our own TLS word keeps exactly one record (a CAS is atomic with
     * respect to a signal handler of the same thread). */
    struct psu_thread_record *expected = NULL;
    /* Relaxed: only this thread (and its handlers) read the TLS word. */
    if (!__atomic_compare_exchange_n(&psu_thread_record, &expected, r, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        /* Release: gives the unused record back, its counts all 0 again. */
        atomic_store_explicit(&r->calls[0], 0, memory_order_relaxed);
        atomic_store_explicit(&r->owner, 0, memory_order_release);
        r = expected;
    }
    /* The general paths' straight-line counted call stores its count with
     * a plain store, which only membarrier makes safe; without it they keep
     * to psu_enter_from (psu_fast.h).  psu_membarrier_ready was written
     * before any thread could call. */
    fast_calls_enable(r);
    errno = saved_errno;
    return r;
}

/* Calls in progress into module `index`: the records that hold it.
 * Records of exited threads that still count on it are reclaimed first (a
 * thread can leave counts by pthread_exit inside a call, or by a jump the
 * longjmp release could not prove). */
unsigned long psu_active_calls(unsigned index)
{
    /* The executable's calls are not counted: its calls[0] only says that
     * it is always held (psu_fast.h). */
    if (index == 0)
        return 0;
    unsigned long sum = 0;
    psu_lock(&fast_calls_lock);
    for (struct record_chunk *c = atomic_load_explicit(&record_chunks, memory_order_acquire);
         c; c = c->next) {
        for (unsigned i = 0; i < RECORDS_PER_CHUNK; i++) {
            struct psu_thread_record *r = &c->records[i];
            /* Acquire: pairs with the release store of 0 in psu_leave (and in
             * psu_enter's retry, the longjmp release and reclaim_if_exited),
             * so everything the call did in the module happens-before the
             * dlclose that a zero sum allows. */
            bool held = atomic_load_explicit(&r->calls[index], memory_order_acquire) != 0;
            /* Acquire: pairs with fast_calls_enable's release. */
            _Atomic(uintptr_t) *fast = atomic_load_explicit(&r->fast, memory_order_acquire);
            if (!held && fast) {
                /* Acquire: as above, with psu_leave_fast. */
                uintptr_t count = atomic_load_explicit(&fast[index], memory_order_acquire);
                held = count != 0 && count != PSU_UNREGISTERED;
            }
            if (held && reclaim_if_exited(r))
                held = false;
            sum += held;
        }
    }
    psu_unlock(&fast_calls_lock);
    return sum;
}

unsigned psu_registered_threads(void)
{
    reclaim_exited_threads();
    unsigned n = 0;
    for (struct record_chunk *c = atomic_load_explicit(&record_chunks, memory_order_acquire);
         c; c = c->next)
        for (unsigned i = 0; i < RECORDS_PER_CHUNK; i++)
            /* Relaxed: a count for status, ordering nothing. */
            n += atomic_load_explicit(&c->records[i].owner, memory_order_relaxed) > 0;
    return n;
}

/* fork child: only the forking thread exists.  It keeps its record (now
 * under its new tid, so its calls in progress still count); every other
 * record is dropped with its counts. */
static void records_after_fork(void)
{
    /* Relaxed throughout: the child has one thread, and its update thread
     * is created (pthread_create synchronises) after this. */
    for (struct record_chunk *c = atomic_load_explicit(&record_chunks, memory_order_acquire);
         c; c = c->next) {
        for (unsigned i = 0; i < RECORDS_PER_CHUNK; i++) {
            struct psu_thread_record *r = &c->records[i];
            if (r == psu_thread_record) {
                atomic_store_explicit(&r->owner, current_tid(), memory_order_relaxed);
                continue;
            }
            for (unsigned m = 0; m < PSU_MAX_MODULES; m++)
                atomic_store_explicit(&r->calls[m], 0, memory_order_relaxed);
            atomic_store_explicit(&r->fast, NULL, memory_order_relaxed);
            atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
        }
    }
}

/* ---- longjmp ------------------------------------------------------------- */

/* A longjmp out of counted calls skips their psu_leave.  The runtime defines
 * longjmp, _longjmp, siglongjmp and __longjmp_chk (a DSU executable is linked
 * -rdynamic, so these definitions take precedence for the whole process):
 * each releases the counts of the frames the jump discards, then jumps with
 * the C library's function.  What is proven discarded (docs/operations.md,
 * "longjmp and stack switching"):
 *   - the jump's target stack pointer T, demangled from the jmp_buf (x86-64
 *     glibc; checked at start-up), lies on this thread's own stack [lo, hi)
 *     (known for the main thread and for threads made by pthread_create);
 *   - if the current stack pointer S is on that stack too, the frames in
 *     [S, T] are discarded: a count whose outermost frame lies there goes;
 *   - if S is elsewhere (a signal's alternate stack, a coroutine's), every
 *     frame of this thread's stack below T is dead once the jump lands.
 * Anything else (target on another stack: a coroutine switch by longjmp;
 * S above T) releases nothing: the module stays loaded, never too early. */
static _Thread_local uintptr_t stack_lo PSU_TLS, stack_hi PSU_TLS;

/* Written once by the constructor before any thread exists (or, before it
 * ran, by the first caller); read by every jump and every pthread_create. */
static int longjmp_release_ok;
typedef void (*jump_fn)(struct __jmp_buf_tag *, int);
static jump_fn real_longjmp, real__longjmp, real_siglongjmp, real_longjmp_chk;
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static create_fn real_pthread_create;

static void note_stack_bounds(void)
{
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
        stack_lo = (uintptr_t)addr;
        stack_hi = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
}

#if defined(__x86_64__) && defined(__GLIBC__)
/* glibc's PTR_MANGLE on x86-64: xor with the pointer guard (%fs:0x30), then
 * rotate left by 0x11.  The stack pointer is the jmp_buf's 7th word. */
static uintptr_t jump_target_sp(const struct __jmp_buf_tag *env)
{
    uintptr_t word = (uintptr_t)env->__jmpbuf[6], guard;
    __asm__("mov %%fs:0x30, %0" : "=r"(guard));
    return ((word >> 0x11) | (word << (64 - 0x11))) ^ guard;
}
#else
static uintptr_t jump_target_sp(const struct __jmp_buf_tag *env)
{
    (void)env;
    return 0;
}
#endif

/* Releases the counts of this thread's frames the jump to `env` discards. */
static void release_skipped_calls(const struct __jmp_buf_tag *env)
{
    struct psu_thread_record *self = psu_thread_record;
    if (!self || !longjmp_release_ok || !stack_hi)
        return;
    uintptr_t target = jump_target_sp(env), here = psu_stack_pointer();
    uintptr_t from;
    if (target < stack_lo || target >= stack_hi)
        return;                         /* onto another stack: a switch */
    if (here >= stack_lo && here < stack_hi) {
        if (here > target)
            return;                     /* not an unwinding of this stack */
        from = here;
    } else {
        from = stack_lo;                /* from an alternate stack */
    }
    for (unsigned m = 1; m < PSU_MAX_MODULES; m++) {
        /* Relaxed: our own counter, the counted call's stack pointer (or 0).
         * sp == target: the counted call was made (inlined) by the very
         * frame that called setjmp; the jump abandons it all the same. */
        uintptr_t sp = atomic_load_explicit(&self->calls[m], memory_order_relaxed);
        if (sp != 0 && sp >= from && sp <= target)
            /* Release: pairs with the scan's acquire load, as psu_leave. */
            atomic_store_explicit(&self->calls[m], 0, memory_order_release);
        /* The same for the fast count (PSU_UNREGISTERED is no stack). */
        sp = atomic_load_explicit(&psu_fast_calls[m], memory_order_relaxed);
        if (sp != 0 && sp >= from && sp <= target)
            atomic_store_explicit(&psu_fast_calls[m], 0, memory_order_release);
    }
}

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p)
        psu_die(ENOENT, name);
    return p;
}

/* _longjmp and __longjmp_chk are glibc's; a C library without them never
 * has callers of them but our own definitions: longjmp does their job. */
static void resolve_interposed(void)
{
    if (!real_longjmp) {
        real_pthread_create = (create_fn)next_symbol("pthread_create");
        real_siglongjmp = (jump_fn)next_symbol("siglongjmp");
        jump_fn plain = (jump_fn)next_symbol("longjmp");
        void *p = dlsym(RTLD_NEXT, "_longjmp");
        real__longjmp = p ? (jump_fn)p : plain;
        p = dlsym(RTLD_NEXT, "__longjmp_chk");
        real_longjmp_chk = p ? (jump_fn)p : plain;
        real_longjmp = plain;       /* last: the others are set when it is */
    }
}

#define PSU_INTERPOSED __attribute__((visibility("default"), noreturn))
PSU_INTERPOSED void longjmp(struct __jmp_buf_tag env[1], int value)
{
    resolve_interposed();
    release_skipped_calls(env);
    real_longjmp(env, value);
    __builtin_unreachable();
}

PSU_INTERPOSED void _longjmp(struct __jmp_buf_tag env[1], int value)
{
    resolve_interposed();
    release_skipped_calls(env);
    real__longjmp(env, value);
    __builtin_unreachable();
}

PSU_INTERPOSED void siglongjmp(struct __jmp_buf_tag env[1], int value)
{
    resolve_interposed();
    release_skipped_calls(env);
    real_siglongjmp(env, value);
    __builtin_unreachable();
}

PSU_INTERPOSED void __longjmp_chk(struct __jmp_buf_tag env[1], int value);
PSU_INTERPOSED void __longjmp_chk(struct __jmp_buf_tag env[1], int value)
{
    resolve_interposed();
    release_skipped_calls(env);
    real_longjmp_chk(env, value);
    __builtin_unreachable();
}

/* pthread_create: the new thread learns its stack's bounds before running
 * the program's function, in an ordinary (not a handler's) context. */
struct thread_start {
    void *(*function)(void *);
    void *argument;
};

static void *start_thread(void *arg)
{
    struct thread_start start = *(struct thread_start *)arg;
    free(arg);
    note_stack_bounds();
    fast_calls_allowed = true;
    void *result;
    pthread_cleanup_push(fast_calls_retire, NULL);
    result = start.function(start.argument);
    pthread_cleanup_pop(1);
    return result;
}

__attribute__((visibility("default"))) int
pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*function)(void *),
               void *argument)
{
    resolve_interposed();
    struct thread_start *start = malloc(sizeof *start);
    if (!start)
        return EAGAIN;
    *start = (struct thread_start){ function, argument };
    int e = real_pthread_create(thread, attr, start_thread, start);
    if (e)
        free(start);
    return e;
}

/* Start-up: the real functions, the main thread's stack, and a check that
 * the demangling reads a jmp_buf as this C library writes it. */
static void longjmp_release_init(void)
{
    resolve_interposed();
    note_stack_bounds();
    jmp_buf probe;
    if (setjmp(probe) == 0) {
        uintptr_t target = jump_target_sp(probe), here = psu_stack_pointer();
        longjmp_release_ok = target >= here && target - here < 4096;
    }
}

/* ---- function table ------------------------------------------------------ */

/* Open addressing, power-of-two capacity, never more than half full.
 * Written under psu_update_lock (or by the constructor, before the update
 * thread exists); read under psu_update_lock. */
static struct psu_function **table_slots;
static size_t table_capacity, table_used;

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u;          /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void table_insert_unchecked(struct psu_function *fn)
{
    size_t i = name_hash(fn->name) & (table_capacity - 1);
    while (table_slots[i])
        i = (i + 1) & (table_capacity - 1);
    table_slots[i] = fn;
    table_used++;
}

static void table_grow(void)
{
    struct psu_function **old = table_slots;
    size_t old_capacity = table_capacity;
    table_capacity = old_capacity ? old_capacity * 2 : 64;
    table_slots = calloc(table_capacity, sizeof *table_slots);
    if (!table_slots)
        psu_die(ENOMEM, "growing the function table");
    table_used = 0;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i])
            table_insert_unchecked(old[i]);
    free(old);
}

struct psu_function *psu_function_lookup(const char *name)
{
    if (!table_capacity)
        return NULL;
    size_t i = name_hash(name) & (table_capacity - 1);
    for (; table_slots[i]; i = (i + 1) & (table_capacity - 1))
        if (strcmp(table_slots[i]->name, name) == 0)
            return table_slots[i];
    return NULL;
}

bool psu_function_table_add(struct psu_function *fn)
{
    if (psu_function_lookup(fn->name))
        return false;
    if (2 * (table_used + 1) > table_capacity)
        table_grow();
    table_insert_unchecked(fn);
    return true;
}

void psu_functions_in_module(unsigned module, void (*visit)(const char *name, void *arg), void *arg)
{
    for (size_t i = 0; i < table_capacity; i++) {
        struct psu_function *fn = table_slots[i];
        /* Relaxed: slots are written only by switches, under psu_update_lock,
         * which our caller holds; no ordering with the code is needed to read
         * which module a slot names. */
        if (fn && psu_word_module(atomic_load_explicit(&fn->current, memory_order_relaxed)) == module)
            visit(fn->name, arg);
    }
}

/* The executable's records, collected by the linker into section
 * psu_functions; absent (NULL) in a program without DSU functions. */
extern struct psu_function *__start_psu_functions[] __attribute__((weak));
extern struct psu_function *__stop_psu_functions[] __attribute__((weak));

/* ---- modules ------------------------------------------------------------- */

struct psu_module psu_modules[PSU_MAX_MODULES];
unsigned long psu_modules_unloaded;

/* Free indices 1..255, a stack (psu_module_lock). */
static unsigned char free_indices[PSU_MAX_MODULES];
static unsigned free_count;

static void modules_init(size_t executable_functions)
{
    psu_modules[0] = (struct psu_module){
        .index = 0, .state = PSU_MODULE_CURRENT, .fd = -1,
        .functions_current = executable_functions,
    };
    free_count = 0;
    for (unsigned i = PSU_MAX_MODULES - 1; i >= 1; i--) {
        psu_modules[i] = (struct psu_module){ .index = i, .state = PSU_MODULE_FREE, .fd = -1 };
        free_indices[free_count++] = (unsigned char)i;
    }
}

struct range_search {
    uintptr_t load_bias;
    uintptr_t lo, hi;
    bool found;
};

static int range_of_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct range_search *search = arg;
    if (info->dlpi_addr != search->load_bias)
        return 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (start < lo)
            lo = start;
        if (start + ph->p_memsz > hi)
            hi = start + ph->p_memsz;
    }
    search->lo = lo;
    search->hi = hi;
    search->found = true;
    return 1;
}

int psu_module_alloc(struct psu_bundle *bundle, void *handle, int fd)
{
    struct link_map *map = NULL;
    struct range_search search = { 0 };
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map) {
        search.load_bias = map->l_addr;
        dl_iterate_phdr(range_of_object, &search);
    }
    psu_lock(&psu_module_lock);
    if (free_count == 0) {
        psu_unlock(&psu_module_lock);
        return -1;
    }
    unsigned index = free_indices[--free_count];
    psu_modules[index] = (struct psu_module){
        .index = index, .state = PSU_MODULE_CURRENT, .bundle = bundle,
        .handle = handle, .fd = fd, .lo = search.found ? search.lo : 0,
        .hi = search.found ? search.hi : 0,
    };
    psu_unlock(&psu_module_lock);
    return (int)index;
}

/* Caller holds psu_module_lock. */
static void module_free_index(unsigned index)
{
    psu_modules[index] = (struct psu_module){ .index = index, .state = PSU_MODULE_FREE, .fd = -1 };
    free_indices[free_count++] = (unsigned char)index;
}

void psu_module_release_unused(int index)
{
    psu_lock(&psu_module_lock);
    void *handle = psu_modules[index].handle;
    int fd = psu_modules[index].fd;
    module_free_index((unsigned)index);
    psu_unlock(&psu_module_lock);
    dlclose(handle);
    close(fd);
}

/* A module with nothing current and nothing pinned waits for its callers to
 * leave.  Caller holds psu_module_lock. */
static void module_update_state(struct psu_module *m)
{
    if (m->index == 0 || m->state == PSU_MODULE_FREE || m->state == PSU_MODULE_UNLOADING)
        return;
    m->state = (m->functions_current == 0 && m->pins == 0) ? PSU_MODULE_PENDING
                                                          : PSU_MODULE_CURRENT;
}

bool psu_any_pending(void)
{
    bool pending = false;
    psu_lock(&psu_module_lock);
    for (unsigned i = 1; i < PSU_MAX_MODULES && !pending; i++)
        pending = psu_modules[i].state == PSU_MODULE_PENDING;
    psu_unlock(&psu_module_lock);
    return pending;
}

void psu_switch(struct psu_switch_item *items, size_t n)
{
    entry_hooks_restore(items, n);
    entry_stubs_prepare(items, n);
    for (size_t i = 0; i < n; i++)
        /* seq_cst exchange: ordered before the barrier (B) below; pairs with
         * the caller's acquire load / seq_cst re-check of the slot. */
        items[i].old_word = atomic_exchange_explicit(&items[i].fn->current,
                                                     items[i].new_word,
                                                     memory_order_seq_cst);
    /* (B): one barrier for the whole batch. */
    psu_switch_barrier();
    entry_hooks_set(items, n);

    psu_lock(&psu_module_lock);
    for (size_t i = 0; i < n; i++) {
        unsigned to = psu_word_module(items[i].new_word);
        psu_modules[to].functions_current++;
        module_update_state(&psu_modules[to]);
        /* A slot of a function added by a bundle holds PSU_NO_VERSION until
         * its first switch: it was current nowhere. */
        if (items[i].old_word == PSU_NO_VERSION)
            continue;
        unsigned from = psu_word_module(items[i].old_word);
        psu_modules[from].functions_current--;
        module_update_state(&psu_modules[from]);
    }
    psu_unlock(&psu_module_lock);
}

bool psu_unload_idle_modules(void)
{
    bool still_pending = false;
    for (unsigned i = 1; i < PSU_MAX_MODULES; i++) {
        psu_lock(&psu_module_lock);
        struct psu_module *m = &psu_modules[i];
        if (m->state != PSU_MODULE_PENDING) {
            psu_unlock(&psu_module_lock);
            continue;
        }
        /* Every switch away from index i was followed by its barrier (B)
         * before this point (psu_switch returns after it), so a zero sum
         * means no thread runs, or will ever run, code of this module:
         * docs/memory-ordering.md, "The unload decision". */
        if (psu_active_calls(i) != 0) {
            still_pending = true;
            psu_unlock(&psu_module_lock);
            continue;
        }
        m->state = PSU_MODULE_UNLOADING;
        void *handle = m->handle;
        int fd = m->fd;
        struct psu_bundle *bundle = m->bundle;
        psu_unlock(&psu_module_lock);

        if (dlclose(handle) != 0)
            psu_log("dlclose of module %u failed: %s", i, dlerror());
        close(fd);
        psu_bundle_module_unloaded(bundle);

        psu_lock(&psu_module_lock);
        module_free_index(i);
        psu_modules_unloaded++;
        psu_unlock(&psu_module_lock);
    }
    return still_pending;
}

/* ---- pins ------------------------------------------------------------- */

/* Caller holds psu_module_lock.  Only loaded bundle code modules count. */
static struct psu_module *module_containing(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    for (unsigned i = 1; i < PSU_MAX_MODULES; i++) {
        struct psu_module *m = &psu_modules[i];
        if (m->state != PSU_MODULE_FREE && m->lo <= a && a < m->hi)
            return m;
    }
    return NULL;
}

int psu_pin(const void *addr)
{
    psu_lock(&psu_module_lock);
    struct psu_module *m = module_containing(addr);
    int result = 0;
    if (m && m->state == PSU_MODULE_UNLOADING) {
        result = -1;
    } else if (m) {
        m->pins++;
        module_update_state(m);
        result = (int)m->index;
    }
    psu_unlock(&psu_module_lock);
    return result;
}

int psu_unpin(const void *addr)
{
    psu_lock(&psu_module_lock);
    struct psu_module *m = module_containing(addr);
    int result = 0;
    bool became_pending = false;
    if (m && (m->pins == 0 || m->state == PSU_MODULE_UNLOADING)) {
        result = -1;
    } else if (m) {
        m->pins--;
        module_update_state(m);
        became_pending = m->state == PSU_MODULE_PENDING;
        result = (int)m->index;
    }
    psu_unlock(&psu_module_lock);
    if (became_pending)
        psu_wake_update_thread();
    return result;
}

/* ---- fork ------------------------------------------------------------- */

/* prepare: take every lock in order, so the child gets them in a consistent
 * state (no update half done, no connection half accepted). */
static void fork_prepare(void)
{
    psu_lock(&psu_update_lock);
    psu_lock(&psu_module_lock);
    psu_lock(&psu_client_lock);
    psu_lock(&fast_calls_lock);
}

static void fork_parent(void)
{
    psu_unlock(&fast_calls_lock);
    psu_unlock(&psu_client_lock);
    psu_unlock(&psu_module_lock);
    psu_unlock(&psu_update_lock);
}

/* child: only the forking thread exists.  Keep its record, drop the others,
 * reinitialise the locks, then close the parent's connections and start the
 * child's own update thread and socket. */
static void fork_child(void)
{
    records_after_fork();
    pthread_mutex_init(&fast_calls_lock, NULL);
    pthread_mutex_init(&psu_client_lock, NULL);
    pthread_mutex_init(&psu_module_lock, NULL);
    pthread_mutex_init(&psu_update_lock, NULL);
    psu_control_after_fork_child();
}

/* ---- start-up ----------------------------------------------------------- */

/* Runs before ordinary constructors (priority 101), so user constructors
 * that call DSU functions already see membarrier decided. */
__attribute__((constructor(101))) static void psu_start(void)
{
    membarrier_probe();
    entry_hooks_probe();
    entry_stubs_probe();
    /* The main thread's TLS is never freed. */
    if (current_tid() == (long)getpid())
        fast_calls_allowed = true;
    longjmp_release_init();

    size_t n = 0;
    if (__start_psu_functions && __stop_psu_functions) {
        for (struct psu_function **p = __start_psu_functions; p < __stop_psu_functions; p++) {
            if (!*p)
                continue;
            entry_hook_verify(*p);
            if (!psu_function_table_add(*p))
                psu_log("duplicate DSU function name %s ignored", (*p)->name);
            else
                n++;
        }
    }
    modules_init(n);

    int e = pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (e)
        psu_die(e, "pthread_atfork");

    const char *disable = getenv("PSU_DISABLE");
    if (disable && strcmp(disable, "1") == 0)
        return;
    psu_control_start();
}
