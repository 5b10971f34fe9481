/* app.c - a tiny DSU program for the loader tests, written as the build
 * tool would generate it: two DSU functions with records in section
 * psu_functions and hand-written trampolines, and the three psu_* strings.
 *
 * Commands on stdin, one per line; answers on stdout:
 *   call N     -> "answer R" where R = answer(N)
 *   park K     -> a new thread calls park(K); the running version prints
 *                 "parked vX K" on entry and "unparked vX K" when it returns
 *   release K  -> parked calls with ticket <= K return
 *   added N    -> "added R" via the function a bundle's state adds (if any)
 *   pin/unpin  -> "pin R"/"unpin R": psu_pin/psu_unpin of answer's current code
 *   fork       -> "child PID": forks; the child serves its own socket and
 *                 exits when the parent has exited
 *   quit
 * Version 1 (this executable): answer(x) = 1000 + x. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psu.h"

#ifndef APP_BUILD_ID
#define APP_BUILD_ID "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#endif
const char psu_build_id[] = APP_BUILD_ID;
const char psu_program_name[] = "app";
const char psu_version_label[] = "v1";

/* State the patches share (exported by -rdynamic). */
_Atomic int app_release;

/* Versions named by address in a slot word leave its low byte to the module
 * index (psu_fast.h), so they are aligned. */
__attribute__((aligned(PSU_CODE_ALIGN))) static int answer_impl(int x)
{
    return 1000 + x;
}

__attribute__((aligned(PSU_CODE_ALIGN))) static int park_impl(int ticket)
{
    printf("parked v1 %d\n", ticket);
    while (atomic_load(&app_release) < ticket)
        usleep(1000);
    printf("unparked v1 %d\n", ticket);
    return 1;
}

struct psu_function app_answer_record = { (uintptr_t)answer_impl, "app.c:answer", 0, 0 };
struct psu_function app_park_record = { (uintptr_t)park_impl, "app.c:park", 0, 0 };
static struct psu_function *records[] __attribute__((used, section("psu_functions"))) = {
    &app_answer_record, &app_park_record,
};

int answer(int x)
{
    struct psu_call c = psu_enter(&app_answer_record);
    int r = ((int (*)(int))c.code)(x);
    psu_leave(c);
    return r;
}

int park(int ticket)
{
    struct psu_call c = psu_enter(&app_park_record);
    int r = ((int (*)(int))c.code)(ticket);
    psu_leave(c);
    return r;
}

static void *park_thread(void *arg)
{
    park((int)(intptr_t)arg);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[256];
    printf("ready %d\n", (int)getpid());
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        if (sscanf(line, "call %d", &n) == 1) {
            printf("answer %d\n", answer(n));
        } else if (sscanf(line, "park %d", &n) == 1) {
            pthread_t t;
            pthread_create(&t, NULL, park_thread, (void *)(intptr_t)n);
            pthread_detach(t);
        } else if (sscanf(line, "release %d", &n) == 1) {
            atomic_store(&app_release, n);
            printf("released %d\n", n);
        } else if (sscanf(line, "added %d", &n) == 1) {
            int (*added)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "added");
            printf("added %d\n", added ? added(n) : -1);
        } else if (strncmp(line, "pin", 3) == 0 || strncmp(line, "unpin", 5) == 0) {
            /* Pins (unpins) the module of answer's current code, remembered
             * at "pin" time, as a program keeping a pointer into it would. */
            static const void *pinned;
            if (line[0] == 'p')
                pinned = psu_code(atomic_load(&app_answer_record.current));
            printf("%s %d\n", line[0] == 'p' ? "pin" : "unpin",
                   line[0] == 'p' ? psu_pin(pinned) : psu_unpin(pinned));
        } else if (strncmp(line, "fork", 4) == 0) {
            pid_t parent = getpid();
            pid_t pid = fork();
            if (pid == 0) {
                /* The child answers only on its socket; it ends with its
                 * parent.  exit (not _exit): the runtime unlinks its socket. */
                while (getppid() == parent)
                    usleep(1000);
                exit(0);
            }
            printf("child %d\n", (int)pid);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    return 0;
}
