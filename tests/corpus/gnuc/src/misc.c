/* The rest of the GNU C real code bases use. */
#include <stdarg.h>
#include <complex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gnuc.h"

_Static_assert(sizeof(int) == 4, "int is 32 bits");

/* -- attributes, in every position gcc accepts ---------------------------------- */
struct __attribute__((packed)) packed_pair { char c; int i; };
struct aligned_box { char c; } __attribute__((aligned(16)));
typedef int aligned_int __attribute__((aligned(8)));
static int section_var __attribute__((section(".data.psu_gnuc"), used)) = 7;
int weak_value __attribute__((weak)) = 11;
static int constructed;
__attribute__((visibility("default"))) int visible_value = 1;

__attribute__((constructor)) static void at_start(void)
{
    constructed = 42;
}

static void release(int *p)
{
    *p = 0;
}

__attribute__((noreturn)) void die_now(const char *why);
void die_now(const char *why)
{
    fprintf(stderr, "%s\n", why);
    exit(3);
}

__attribute__((format(printf, 3, 4))) static int format_into(char *out, int size, const char *fmt, ...);

static int sum_impl(int a, int b)
{
    return a + b;
}
int aliased_sum(int a, int b) __attribute__((alias("sum_impl")));

static inline __attribute__((always_inline)) int twice(int x)
{
    return 2 * x;
}

int __attribute__((noinline)) attributes_demo(int x __attribute__((unused)))
{
    aligned_int scaled __attribute__((unused)) = twice(x);
    struct packed_pair pair = { 'a', x };
    struct aligned_box box = { 'b' };
    int r = 0, counted = 0;
    switch (x & 3) {
    case 1:
        r = 1;
        __attribute__((fallthrough));
    case 2:
        r += 2;
        break;
    default:
        r = 5;
    }
    {
        __attribute__((cleanup(release))) int guard = 5;
        counted = guard;
    }
    if (x < -1000)
        die_now("negative");
    return r + counted + (int)sizeof pair + (int)_Alignof(struct aligned_box) + box.c +
           section_var + weak_value + constructed + visible_value + aliased_sum(1, 2);
}

/* -- asm labels and statements ------------------------------------------------------ */
int renamed_counter __asm__("psu_gnuc_renamed_counter") = 3;

int asm_demo(int x)
{
    __asm__ volatile ("" : "+r"(x));
    asm("nop");
    __asm__ __volatile__("" ::: "memory");
    asm goto ("" :::: skip);
    x += 100;
skip:
    return x + 1 + renamed_counter++;
}

/* -- labels as values, computed goto, case ranges ------------------------------------ */
int computed_goto(int op)
{
    static const void *const table[] = { &&add, &&sub, &&done };
    int acc = 10;
    goto *table[op];
add:
    acc += 5;
    goto *table[2];
sub:
    acc -= 5;
    goto *table[2];
done:
    return acc;
}

int case_ranges(int c)
{
    switch (c) {
    case 'a' ... 'z':
        return 1;
    case '0' ... '9':
        return 2;
    default:
        return 0;
    }
}

/* -- arrays: zero-length, flexible, range designators ---------------------------------- */
struct zero_tail { int n; char data[0]; };
struct flex { int n; int items[]; };
static const int ranged[10] = { [0 ... 4] = 1, [5 ... 9] = 2 };
static int ranged_state[] = { [0 ... 7] = 3 };

int arrays_demo(int n)
{
    struct flex *f = malloc(sizeof *f + (size_t)n * sizeof(int));
    struct zero_tail *z = malloc(sizeof *z + 4);
    int sum = 0;
    f->n = n;
    for (int i = 0; i < n; i++)
        f->items[i] = ranged[i % 10] + ranged_state[i % 8]++;
    for (int i = 0; i < f->n; i++)
        sum += f->items[i];
    memcpy(z->data, "abc", 4);
    sum += z->data[1];
    free(f);
    free(z);
    return sum + (int)(sizeof ranged_state / sizeof ranged_state[0]);
}

/* -- __int128, _Atomic, thread-local storage ------------------------------------------ */
unsigned long long int128_demo(unsigned long long a, unsigned long long b)
{
    unsigned __int128 product = (unsigned __int128)a * b;
    __int128 negative = -(__int128)product;
    return (unsigned long long)(product >> 64) + (negative < 0);
}

static _Atomic int atomic_hits;
static _Atomic(long) atomic_total;
static __thread int tls_calls;
_Thread_local int tls_global;

int atomics_and_threads_demo(void)
{
    _Static_assert(sizeof(long) >= 4, "long is at least 32 bits");
    atomic_fetch_add(&atomic_hits, 1);
    atomic_fetch_add_explicit(&atomic_total, 10, memory_order_relaxed);
    tls_calls++;
    tls_global += 2;
    return atomic_load(&atomic_hits) * 1000 + (int)atomic_load(&atomic_total) + tls_calls + tls_global;
}

/* -- _Generic, __builtin_types_compatible_p, variadic macros ----------------------------- */
#define TYPE_NAME(x) _Generic((x), int: "int", double: "double", char *: "string", default: "other")
#define SAME_TYPE(a, b) __builtin_types_compatible_p(__typeof__(a), __typeof__(b))
#define FORMAT(out, size, fmt, ...) format_into(out, size, fmt, ##__VA_ARGS__)
#define FORMAT_ONLY(out, size, ...) format_into(out, size, __VA_ARGS__)

static int format_into(char *out, int size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, (size_t)size, fmt, ap);
    va_end(ap);
    return n;
}

int generic_demo(char *out, int size)
{
    int i = 1;
    double d = 2.0;
    char *s = "x";
    long l = 3;
    return FORMAT(out, size, "%s %s %s %s %d%d%d", TYPE_NAME(i), TYPE_NAME(d), TYPE_NAME(s),
                  TYPE_NAME(l), SAME_TYPE(i, int), SAME_TYPE(i, long),
                  __builtin_types_compatible_p(char *, __typeof__(s)));
}

int variadic_macro_demo(char *out, int size, int x)
{
    char plain[16];
    FORMAT(plain, sizeof plain, "plain");
    return FORMAT_ONLY(out, size, "%s-%d", plain, x);
}

/* -- #pragma and _Pragma inside a function ------------------------------------------------ */
int pragma_demo(int x)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
    int sum = 0;
#pragma GCC diagnostic pop
    _Pragma("GCC diagnostic push")
#pragma GCC unroll 4
    for (int i = 0; i < x; i++)
        sum += i;
    _Pragma("GCC diagnostic pop")
    return sum;
}

/* -- the conditional with the middle operand omitted, __real__/__imag__, a
      _Static_assert among struct members ------------------------------------------------ */
struct checked { int a; _Static_assert(sizeof(int) >= 2, "int"); int b; };

int operators_demo(int x)
{
    struct checked c = { x, 0 };
    _Complex double z = x + 2.0 * I;
    int fallback = c.b ?: 7;
    return (c.a ?: -1) * 100 + fallback + (int)__real__ z + (int)__imag__ z;
}
