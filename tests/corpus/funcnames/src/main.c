/* Plain unit: stdin lines are commands, one answer line each.
 *   compare KEY1 KEY2   "<sign> <function that ran>"
 *   note KEY            what note_key wrote
 *   say KEY             "<what say_key wrote> <the name it gave>"
 *   fail WHY            fail_key: exits with status 3 */
#include <stdio.h>
#include <string.h>
#include "keys.h"

/* called through a pointer, as SQLite calls its comparators */
int (*volatile comparator)(struct sorter *, int *, const void *, int, const void *, int) = compare_keys;

static int encode(const char *text, unsigned char *out)
{
    size_t n = strlen(text);
    out[0] = (unsigned char)n;
    memcpy(out + 1, text, n + 1);
    return (int)n + 2;
}

int main(void)
{
    char line[256], a[100], b[100], note[128];
    unsigned char k1[128], k2[128];
    struct sorter s = { 2, 0, 0 };
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "compare %99s %99s", a, b) == 2) {
            int cached = 0;
            int r = comparator(&s, &cached, k1, encode(a, k1), k2, encode(b, k2));
            printf("%d %s\n", (r > 0) - (r < 0), last_function);
        } else if (sscanf(line, "note %99s", a) == 1) {
            note_key(&s, a, note, (int)sizeof note);
            printf("%s\n", note);
        } else if (sscanf(line, "say %99s", a) == 1) {
            const char *name = say_key(note, (int)sizeof note, "<%s>", a);
            printf("%s %s\n", note, name);
        } else if (sscanf(line, "fail %99s", a) == 1) {
            fail_key(a);
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
