/* Plain unit: stdin lines are commands; "T1 x"/"T2 x" run x on worker 1/2
 * (each keeps its own thread-locals), anything else on the main thread. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "state.h"

struct worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char command[256];
    char reply[256];
    int busy;
};

static struct worker workers[2];

static void *work(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->busy != 1)
            pthread_cond_wait(&w->changed, &w->lock);
        handle(w->command, w->reply, sizeof w->reply);
        w->busy = 2;
        pthread_cond_broadcast(&w->changed);
    }
    return NULL;
}

static void run_on(struct worker *w, const char *command, char *reply)
{
    pthread_mutex_lock(&w->lock);
    snprintf(w->command, sizeof w->command, "%s", command);
    w->busy = 1;
    pthread_cond_broadcast(&w->changed);
    while (w->busy != 2)
        pthread_cond_wait(&w->changed, &w->lock);
    w->busy = 0;
    snprintf(reply, 256, "%s", w->reply);
    pthread_mutex_unlock(&w->lock);
}

int main(void)
{
    char line[256], reply[256];
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&workers[i].lock, NULL);
        pthread_cond_init(&workers[i].changed, NULL);
        pthread_create(&workers[i].thread, NULL, work, &workers[i]);
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "T1 ", 3) == 0)
            run_on(&workers[0], line + 3, reply);
        else if (strncmp(line, "T2 ", 3) == 0)
            run_on(&workers[1], line + 3, reply);
        else
            handle(line, reply, sizeof reply);
        printf("%s\n", reply);
        fflush(stdout);
    }
    return 0;
}
