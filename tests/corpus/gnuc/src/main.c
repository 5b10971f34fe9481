/* Runs every construct of the corpus: with no argument once, printing each
   result; with --serve, one named construct per line read from stdin. */
#include <stdio.h>
#include <string.h>
#include "gnuc.h"

static void run(const char *what)
{
    char text[128];
    int values[] = { 4, 7, -3, 9 };
    int out = 0;
    if (!strcmp(what, "stmtexpr"))
        printf("stmtexpr %d %d\n", stmt_expr_demo(7), first_negative(values, 4));
    else if (!strcmp(what, "shadow"))
        printf("shadow %d\n", shadow_demo(10));
    else if (!strcmp(what, "braces")) {
        classify_into(5, &out);
        printf("braces %d %d %d %d\n", out, classify(-4), classify(0), classify(50));
    } else if (!strcmp(what, "kr"))
        printf("kr %d %d %d\n", kr_add(2, 40L), kr_default(21), kr_promoted('a', 2.5));
    else if (!strcmp(what, "nested"))
        printf("nested %d\n", with_nested(5));
    else if (!strcmp(what, "attributes"))
        printf("attributes %d\n", attributes_demo(1));
    else if (!strcmp(what, "asm"))
        printf("asm %d\n", asm_demo(1));
    else if (!strcmp(what, "goto"))
        printf("goto %d %d %d\n", computed_goto(0), computed_goto(1), computed_goto(2));
    else if (!strcmp(what, "cases"))
        printf("cases %d %d %d\n", case_ranges('q'), case_ranges('5'), case_ranges('#'));
    else if (!strcmp(what, "arrays"))
        printf("arrays %d\n", arrays_demo(12));
    else if (!strcmp(what, "int128"))
        printf("int128 %llu\n", int128_demo(1ULL << 40, 1ULL << 40));
    else if (!strcmp(what, "atomics"))
        printf("atomics %d\n", atomics_and_threads_demo());
    else if (!strcmp(what, "generic")) {
        int n = generic_demo(text, sizeof text);
        printf("generic %d %s\n", n, text);
    } else if (!strcmp(what, "variadic")) {
        variadic_macro_demo(text, sizeof text, 9);
        printf("variadic %s\n", text);
    } else if (!strcmp(what, "pragma"))
        printf("pragma %d\n", pragma_demo(10));
    else if (!strcmp(what, "operators"))
        printf("operators %d %d\n", operators_demo(3), operators_demo(0));
    else
        printf("unknown %s\n", what);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const char *const all[] = { "stmtexpr", "shadow", "braces", "kr", "nested", "attributes",
                                       "asm", "goto", "cases", "arrays", "int128", "atomics",
                                       "generic", "variadic", "pragma", "operators" };
    char line[64];
    if (argc > 1 && !strcmp(argv[1], "--serve")) {
        printf("ready\n");
        fflush(stdout);
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\n")] = 0;
            run(line);
        }
        return 0;
    }
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        run(all[i]);
    return 0;
}
