/* Answers each command line on stdin with one line; a thread calls every
 * unit's functions without pause and counts results neither version gives. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "units.h"

static int stopping, checks, wrong;

static void *check(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
        int ok = alpha_other(1) == 12 && beta_kr(1, 2) == 23 && gamma_sum(3, 1, 2, 3) == 6 &&
                 delta_made() == 44 && alpha_value() > 0 && beta_value() > 0 &&
                 gamma_value() > 0 && delta_value() > 0;
        __atomic_add_fetch(&checks, 1, __ATOMIC_RELAXED);
        if (!ok)
            __atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(void)
{
    char line[256];
    pthread_t checker;
    pthread_create(&checker, NULL, check, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "values") == 0)
            printf("%d %d %d %d\n", alpha_value(), beta_value(), gamma_value(), delta_value());
        else if (strcmp(line, "checks") == 0)
            printf("%d %d\n", __atomic_load_n(&checks, __ATOMIC_RELAXED),
                   __atomic_load_n(&wrong, __ATOMIC_RELAXED));
        else
            printf("?\n");
        fflush(stdout);
    }
    __atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
    pthread_join(checker, NULL);
    return 0;
}
