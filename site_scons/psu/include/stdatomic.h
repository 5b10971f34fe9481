/* Parse-only <stdatomic.h> for psu's C front end.
 *
 * The compiler's own header implements the generic functions with statement
 * expressions and __auto_type, which pycparser cannot read.  The analysis only
 * needs a faithful *shape*: each operation becomes a call of a distinct
 * pseudo-function, so a changed operation or memory order still changes a
 * function's hash.  Never used to compile code. */
#ifndef PSU_PARSE_STDATOMIC_H
#define PSU_PARSE_STDATOMIC_H
typedef enum { memory_order_relaxed, memory_order_consume, memory_order_acquire,
               memory_order_release, memory_order_acq_rel, memory_order_seq_cst } memory_order;
typedef struct atomic_flag { unsigned char __psu_flag; } atomic_flag;
#define ATOMIC_FLAG_INIT { 0 }
#define ATOMIC_VAR_INIT(value) (value)
typedef _Atomic _Bool atomic_bool;
typedef _Atomic char atomic_char;
typedef _Atomic signed char atomic_schar;
typedef _Atomic unsigned char atomic_uchar;
typedef _Atomic short atomic_short;
typedef _Atomic unsigned short atomic_ushort;
typedef _Atomic int atomic_int;
typedef _Atomic unsigned int atomic_uint;
typedef _Atomic long atomic_long;
typedef _Atomic unsigned long atomic_ulong;
typedef _Atomic long long atomic_llong;
typedef _Atomic unsigned long long atomic_ullong;
typedef _Atomic __CHAR16_TYPE__ atomic_char16_t;
typedef _Atomic __CHAR32_TYPE__ atomic_char32_t;
typedef _Atomic __WCHAR_TYPE__ atomic_wchar_t;
typedef _Atomic __INT_LEAST8_TYPE__ atomic_int_least8_t;
typedef _Atomic __UINT_LEAST8_TYPE__ atomic_uint_least8_t;
typedef _Atomic __INT_LEAST16_TYPE__ atomic_int_least16_t;
typedef _Atomic __UINT_LEAST16_TYPE__ atomic_uint_least16_t;
typedef _Atomic __INT_LEAST32_TYPE__ atomic_int_least32_t;
typedef _Atomic __UINT_LEAST32_TYPE__ atomic_uint_least32_t;
typedef _Atomic __INT_LEAST64_TYPE__ atomic_int_least64_t;
typedef _Atomic __UINT_LEAST64_TYPE__ atomic_uint_least64_t;
typedef _Atomic __INT_FAST8_TYPE__ atomic_int_fast8_t;
typedef _Atomic __UINT_FAST8_TYPE__ atomic_uint_fast8_t;
typedef _Atomic __INT_FAST16_TYPE__ atomic_int_fast16_t;
typedef _Atomic __UINT_FAST16_TYPE__ atomic_uint_fast16_t;
typedef _Atomic __INT_FAST32_TYPE__ atomic_int_fast32_t;
typedef _Atomic __UINT_FAST32_TYPE__ atomic_uint_fast32_t;
typedef _Atomic __INT_FAST64_TYPE__ atomic_int_fast64_t;
typedef _Atomic __UINT_FAST64_TYPE__ atomic_uint_fast64_t;
typedef _Atomic __INTPTR_TYPE__ atomic_intptr_t;
typedef _Atomic __UINTPTR_TYPE__ atomic_uintptr_t;
typedef _Atomic __SIZE_TYPE__ atomic_size_t;
typedef _Atomic __PTRDIFF_TYPE__ atomic_ptrdiff_t;
typedef _Atomic __INTMAX_TYPE__ atomic_intmax_t;
typedef _Atomic __UINTMAX_TYPE__ atomic_uintmax_t;
#define ATOMIC_BOOL_LOCK_FREE 2
#define ATOMIC_CHAR_LOCK_FREE 2
#define ATOMIC_CHAR16_T_LOCK_FREE 2
#define ATOMIC_CHAR32_T_LOCK_FREE 2
#define ATOMIC_WCHAR_T_LOCK_FREE 2
#define ATOMIC_SHORT_LOCK_FREE 2
#define ATOMIC_INT_LOCK_FREE 2
#define ATOMIC_LONG_LOCK_FREE 2
#define ATOMIC_LLONG_LOCK_FREE 2
#define ATOMIC_POINTER_LOCK_FREE 2
int __psu_atomic();
#define atomic_init(a0, a1) __psu_atomic("atomic_init", a0, a1)
#define atomic_store(a0, a1) __psu_atomic("atomic_store", a0, a1)
#define atomic_store_explicit(a0, a1, a2) __psu_atomic("atomic_store_explicit", a0, a1, a2)
#define atomic_load(a0) __psu_atomic("atomic_load", a0)
#define atomic_load_explicit(a0, a1) __psu_atomic("atomic_load_explicit", a0, a1)
#define atomic_exchange(a0, a1) __psu_atomic("atomic_exchange", a0, a1)
#define atomic_exchange_explicit(a0, a1, a2) __psu_atomic("atomic_exchange_explicit", a0, a1, a2)
#define atomic_compare_exchange_strong(a0, a1, a2) __psu_atomic("atomic_compare_exchange_strong", a0, a1, a2)
#define atomic_compare_exchange_strong_explicit(a0, a1, a2, a3, a4) __psu_atomic("atomic_compare_exchange_strong_explicit", a0, a1, a2, a3, a4)
#define atomic_compare_exchange_weak(a0, a1, a2) __psu_atomic("atomic_compare_exchange_weak", a0, a1, a2)
#define atomic_compare_exchange_weak_explicit(a0, a1, a2, a3, a4) __psu_atomic("atomic_compare_exchange_weak_explicit", a0, a1, a2, a3, a4)
#define atomic_flag_test_and_set(a0) __psu_atomic("atomic_flag_test_and_set", a0)
#define atomic_flag_test_and_set_explicit(a0, a1) __psu_atomic("atomic_flag_test_and_set_explicit", a0, a1)
#define atomic_flag_clear(a0) __psu_atomic("atomic_flag_clear", a0)
#define atomic_flag_clear_explicit(a0, a1) __psu_atomic("atomic_flag_clear_explicit", a0, a1)
#define atomic_thread_fence(a0) __psu_atomic("atomic_thread_fence", a0)
#define atomic_signal_fence(a0) __psu_atomic("atomic_signal_fence", a0)
#define atomic_is_lock_free(a0) __psu_atomic("atomic_is_lock_free", a0)
#define kill_dependency(a0) __psu_atomic("kill_dependency", a0)
#define atomic_fetch_add(a0, a1) __psu_atomic("atomic_fetch_add", a0, a1)
#define atomic_fetch_add_explicit(a0, a1, a2) __psu_atomic("atomic_fetch_add_explicit", a0, a1, a2)
#define atomic_fetch_sub(a0, a1) __psu_atomic("atomic_fetch_sub", a0, a1)
#define atomic_fetch_sub_explicit(a0, a1, a2) __psu_atomic("atomic_fetch_sub_explicit", a0, a1, a2)
#define atomic_fetch_or(a0, a1) __psu_atomic("atomic_fetch_or", a0, a1)
#define atomic_fetch_or_explicit(a0, a1, a2) __psu_atomic("atomic_fetch_or_explicit", a0, a1, a2)
#define atomic_fetch_xor(a0, a1) __psu_atomic("atomic_fetch_xor", a0, a1)
#define atomic_fetch_xor_explicit(a0, a1, a2) __psu_atomic("atomic_fetch_xor_explicit", a0, a1, a2)
#define atomic_fetch_and(a0, a1) __psu_atomic("atomic_fetch_and", a0, a1)
#define atomic_fetch_and_explicit(a0, a1, a2) __psu_atomic("atomic_fetch_and_explicit", a0, a1, a2)
#endif
