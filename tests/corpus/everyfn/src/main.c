/* Plain unit: stdin lines are commands, answered on stdout; two checker
 * threads call the variadic and K&R functions without pause and count every
 * result that is neither the old nor the new version's. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core.h"

static int stopping, checks, wrong;

static int either(const char *text, const char *old, const char *new)
{
    return strcmp(text, old) == 0 || strcmp(text, new) == 0;
}

static void *check(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
        char text[64];
        int ok = 1, nest, kr, fact;
        core_format(text, sizeof text, "%d|%.2f|%s|%ld", 7, 2.5, "x", -3L);
        ok &= either(text, "7|2.50|x|-3", "v2 7|2.50|x|-3");
        nest = core_nest(3, "x", 1.5, 4);
        ok &= nest >= 23 && nest <= 26;     /* a recursion the update crossed mixes */
        kr = core_kr('a', 1.5, 3);          /* char and float, promoted */
        ok &= kr == 97 + 150 + 3 || kr == 1000 + 97 + 150 + 3;
        fact = core_fact(5);
        ok &= fact == 120 || fact == 240;
        ok &= core_sum(3, 1, 2, 3) == 6 || core_sum(3, 1, 2, 3) == 16;
        __atomic_add_fetch(&checks, 1, __ATOMIC_RELAXED);
        if (!ok)
            __atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int held;

static void *hold(void *arg)
{
    (void)arg;
    held = core_wait();
    return NULL;
}

int main(void)
{
    char line[256], text[64];
    pthread_t checkers[2], worker, holder;
    for (int i = 0; i < 2; i++)
        pthread_create(&checkers[i], NULL, check, NULL);
    pthread_create(&worker, NULL, core_worker, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "fmt") == 0) {
            core_format(text, sizeof text, "%d|%.2f|%s|%ld", 7, 2.5, "x", -3L);
            printf("%s\n", text);
        } else if (strcmp(line, "nest") == 0)
            printf("%d\n", core_nest(3, "x", 1.5, 4));
        else if (strcmp(line, "sum") == 0)
            printf("%d\n", core_sum(3, 1, 2, 3));
        else if (strcmp(line, "first") == 0)
            printf("%d\n", core_first(1, 2.0, "unused"));
        else if (strcmp(line, "tally") == 0)
            printf("%d\n", core_tally());
        else if (strcmp(line, "kr") == 0)
            printf("%d\n", core_kr('a', 1.5, 3));
        else if (strcmp(line, "fact") == 0)
            printf("%d\n", core_fact(5));
        else if (strcmp(line, "weight") == 0)
            printf("%d\n", core_weight(2));
        else if (strcmp(line, "apply") == 0)
            printf("%d\n", core_apply(10));
        else if (strcmp(line, "step") == 0)
            printf("%d\n", core_step(10));
        else if (strcmp(line, "hold") == 0) {      /* a call of core_wait in progress */
            pthread_create(&holder, NULL, hold, NULL);
            while (!core_waiting())
                usleep(1000);
            printf("held\n");
        } else if (strcmp(line, "release") == 0) {
            core_release();
            pthread_join(holder, NULL);
            printf("%d\n", held);
        } else if (strcmp(line, "ticks") == 0)
            printf("%d\n", core_ticks() > 0);
        else if (strcmp(line, "checks") == 0)
            printf("%d %d\n", __atomic_load_n(&checks, __ATOMIC_RELAXED) > 0,
                   __atomic_load_n(&wrong, __ATOMIC_RELAXED));
        else
            printf("unknown %s\n", line);
        fflush(stdout);
    }
    __atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 2; i++)
        pthread_join(checkers[i], NULL);
    return 0;
}
