/* Functions that name themselves with __func__, __FUNCTION__ and
 * __PRETTY_FUNCTION__: in the program, in a bundle's version, and in a
 * variadic function's va_list variant (definitions psu renames). */
struct sorter { int fields; int descending; int tails; };

int compare_keys(struct sorter *s, int *cached, const void *key1, int n1,
                 const void *key2, int n2);
void note_key(struct sorter *s, const char *key, char *out, int size);
_Noreturn void fail_key(const char *why);
int key_tail(struct sorter *s, const void *key1, const void *key2);
const char *say_key(char *out, int size, const char *format, ...);
extern const char *last_function;
