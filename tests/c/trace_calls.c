/* Test-only: collects the names of the DSU functions whose slot a call read
 * (psu_fast.h reports them through PSU_TEST_SLOT_READ) and writes them, one per
 * line, to $PSU_TEST_TRACE when the program exits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 256
static const char *names[MAX_NAMES];
static int count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void psu_test_note(const char *name)
{
    pthread_mutex_lock(&lock);
    int i;
    for (i = 0; i < count && names[i] != name; i++)
        ;
    if (i == count && count < MAX_NAMES)
        names[count++] = name;
    pthread_mutex_unlock(&lock);
}

__attribute__((destructor)) static void write_trace(void)
{
    const char *path = getenv("PSU_TEST_TRACE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f)
        return;
    for (int i = 0; i < count; i++)
        fprintf(f, "%s\n", names[i]);
    fclose(f);
}
