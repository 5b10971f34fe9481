/* Plain unit: stdin lines are commands, one answer line each.
 *   walk N | even N | odd N   run it now: "<result> <trace>"
 *   start walk|even N LEVEL   run it in a thread that waits at LEVEL: "paused"
 *   go                        let it go on, wait for it: "<result> <trace>" */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "walk.h"

static int (*started)(int);
static int argument, result;

static void *run(void *arg)
{
    (void)arg;
    result = started(argument);
    return NULL;
}

static int (*by_name(const char *name))(int)
{
    return strcmp(name, "walk") == 0 ? walk : strcmp(name, "even") == 0 ? is_even : is_odd;
}

int main(void)
{
    char line[256], name[16];
    int n, level;
    pthread_t thread;
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "start %15s %d %d", name, &n, &level) == 3) {
            started = by_name(name);
            argument = n;
            walk_pause_at(level);
            pthread_create(&thread, NULL, run, NULL);
            while (!walk_paused())
                usleep(1000);
            printf("paused\n");
        } else if (strncmp(line, "go", 2) == 0) {
            walk_go();
            pthread_join(thread, NULL);
            printf("%d %s\n", result, walk_trace());
        } else if (sscanf(line, "%15s %d", name, &n) == 2) {
            walk_pause_at(-1);
            int r = by_name(name)(n);
            printf("%d %s\n", r, walk_trace());
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
