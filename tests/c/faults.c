/* faults.c - a DSU program for the fault suite (tests/test_faults.py):
 * signals whose handlers call DSU functions, longjmp out of DSU calls, a
 * coroutine (ucontext) suspended inside one, fork.  Written as the build tool
 * would generate it: records in section psu_functions, trampolines by hand.
 *
 * DSU functions (version 1 here; tests/c/faults_patch.c has the others):
 *   answer(x)    1000 * version + x
 *   thrower(how) longjmps out to faults_jump_buf: how 0 longjmp, 1
 *                siglongjmp, 2 _longjmp, 3 raise(SIGUSR2), whose handler
 *                (on an alternate stack) siglongjmps
 *   coro_step()  yields to the main context in the middle of the call
 *
 * Commands on stdin, one per line; answers on stdout:
 *   call N            -> "answer R"
 *   storm T ROUNDS    -> T threads; half make their first counted call in a
 *                        SIGUSR1 handler, half are interrupted by one in the
 *                        middle of registration (the runtime's test hook);
 *                        then every thread calls answer ROUNDS times while a
 *                        signaller hits them with SIGUSR1, and exits.
 *                        "storm H E" (handler calls, errors)
 *   jump K HOW        -> K calls of thrower(HOW), each jumped out of;
 *                        "jumped K"
 *   exitin            -> a thread calls thrower(4): a bundle's version ends
 *                        the thread inside the call; "exited"
 *   coro start        -> a coroutine calls coro_step, which yields: "coro in vN"
 *   coro resume       -> it returns: "coro done"
 *   mainjump          -> a longjmp on the main stack (coroutine suspended)
 *   fork N            -> N children that _exit once the parent has exited:
 *                        "forked N"
 *   forkexec N        -> N children that exec true, one after the other,
 *                        each waited for: "execed N" (how many exited 0)
 *   quit
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "psu.h"

const char psu_build_id[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const char psu_program_name[] = "faults";
const char psu_version_label[] = "v1";

/* Shared with the bundles' code (exported by -rdynamic). */
sigjmp_buf faults_jump_buf;
ucontext_t faults_main_context, faults_coro_context;

/* Versions named by address in a slot word leave its low byte to the module
 * index (psu_fast.h), so they are aligned. */
__attribute__((aligned(PSU_CODE_ALIGN))) static int answer_v1(int x)
{
    return 1000 + x;
}

__attribute__((aligned(PSU_CODE_ALIGN))) static void thrower_v1(int how)
{
    (void)how;
    siglongjmp(faults_jump_buf, 1);
}

__attribute__((aligned(PSU_CODE_ALIGN))) static int coro_step_v1(void)
{
    printf("coro in v1\n");
    swapcontext(&faults_coro_context, &faults_main_context);
    return 1;
}

struct psu_function faults_answer_record = { (uintptr_t)answer_v1, "faults.c:answer", 0, 0 };
struct psu_function faults_thrower_record = { (uintptr_t)thrower_v1, "faults.c:thrower", 0, 0 };
struct psu_function faults_coro_record = { (uintptr_t)coro_step_v1, "faults.c:coro_step", 0, 0 };
static struct psu_function *records[] __attribute__((used, section("psu_functions"))) = {
    &faults_answer_record, &faults_thrower_record, &faults_coro_record,
};

int answer(int x)
{
    struct psu_call c = psu_enter(&faults_answer_record);
    int r = ((int (*)(int))c.code)(x);
    psu_leave(c);
    return r;
}

void thrower(int how)
{
    struct psu_call c = psu_enter(&faults_thrower_record);
    ((void (*)(int))c.code)(how);
    psu_leave(c);
}

int coro_step(void)
{
    struct psu_call c = psu_enter(&faults_coro_record);
    int r = ((int (*)(void))c.code)();
    psu_leave(c);
    return r;
}

/* ---- signals ------------------------------------------------------------- */

static _Atomic unsigned long handler_calls, handler_errors;
static _Thread_local _Atomic int handled_here;
static _Thread_local int hook_armed;

/* PSU_TEST_REGISTER_HOOK (the build passes -D): runs in the middle of the
 * runtime's registration; when armed, a signal lands right there. */
void faults_register_hook(void)
{
    if (hook_armed) {
        hook_armed = 0;
        raise(SIGUSR1);
    }
}

static void on_usr1(int sig)
{
    (void)sig;
    int r = answer(5);
    if (r % 1000 != 5)
        atomic_fetch_add(&handler_errors, 1);
    atomic_fetch_add(&handler_calls, 1);
    atomic_store(&handled_here, 1);
}

struct storm {
    int rounds;
    _Atomic int running;
    _Atomic int started;
};

static void *storm_thread(void *arg)
{
    struct storm *s = arg;
    int kind = atomic_fetch_add(&s->started, 1) % 2;
    if (kind == 0) {
        /* The first counted call is the handler's: wait for one, in and
         * out of malloc (a registration that allocates would deadlock on
         * the allocator's lock when the signal lands inside it). */
        for (int i = 0; i < 2000000 && !atomic_load(&handled_here); i++) {
            void *volatile p = malloc(64 + (size_t)(i % 512));
            free(p);
            if (i % 64 == 0)
                usleep(10);
        }
    } else {
        hook_armed = 1;     /* a handler lands inside our registration */
    }
    for (int i = 0; i < s->rounds; i++)
        if (answer(i % 100) % 1000 != i % 100)
            atomic_fetch_add(&handler_errors, 1);
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

static void storm(int threads, int rounds)
{
    struct storm s = { .rounds = rounds, .running = threads };
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, storm_thread, &s);
    /* The signaller: every thread still running gets SIGUSR1s. */
    while (atomic_load(&s.running) > 0) {
        for (int i = 0; i < threads; i++)
            pthread_kill(t[i], SIGUSR1);    /* exited but not joined: harmless */
        usleep(200);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
}

/* ---- longjmp and coroutines ---------------------------------------------- */

static char coro_stack[256 * 1024] __attribute__((aligned(16)));
static int coro_finished;

static void coroutine(void)
{
    coro_step();
    coro_finished = 1;
}

static void on_usr2(int sig)
{
    (void)sig;
    siglongjmp(faults_jump_buf, 1);
}

static void *exit_inside(void *arg)
{
    (void)arg;
    thrower(4);
    return NULL;
}

static void __attribute__((noinline)) jump_here(jmp_buf env)
{
    longjmp(env, 1);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    static char alternate[64 * 1024];
    stack_t ss = { .ss_sp = alternate, .ss_size = sizeof alternate };
    sigaltstack(&ss, NULL);
    struct sigaction sa2 = { .sa_handler = on_usr2, .sa_flags = SA_ONSTACK };
    sigemptyset(&sa2.sa_mask);
    sigaction(SIGUSR2, &sa2, NULL);

    char line[256];
    printf("ready %d\n", (int)getpid());
    while (fgets(line, sizeof line, stdin)) {
        int n = 0, m = 0;
        if (sscanf(line, "call %d", &n) == 1) {
            printf("answer %d\n", answer(n));
        } else if (sscanf(line, "storm %d %d", &n, &m) == 2) {
            storm(n, m);
            printf("storm %lu %lu\n", atomic_load(&handler_calls), atomic_load(&handler_errors));
        } else if (sscanf(line, "jump %d %d", &n, &m) == 2) {
            volatile int done = 0;
            for (volatile int i = 0; i < n; i++) {
                if (sigsetjmp(faults_jump_buf, 1) == 0)
                    thrower(m);
                else
                    done++;
            }
            printf("jumped %d\n", done);
        } else if (strncmp(line, "exitin", 6) == 0) {
            pthread_t t;
            pthread_create(&t, NULL, exit_inside, NULL);
            pthread_join(t, NULL);
            printf("exited\n");
        } else if (strncmp(line, "coro start", 10) == 0) {
            getcontext(&faults_coro_context);
            faults_coro_context.uc_stack.ss_sp = coro_stack;
            faults_coro_context.uc_stack.ss_size = sizeof coro_stack;
            faults_coro_context.uc_link = &faults_main_context;
            makecontext(&faults_coro_context, coroutine, 0);
            coro_finished = 0;
            swapcontext(&faults_main_context, &faults_coro_context);
        } else if (strncmp(line, "coro resume", 11) == 0) {
            swapcontext(&faults_main_context, &faults_coro_context);
            printf("coro %s\n", coro_finished ? "done" : "suspended");
        } else if (strncmp(line, "mainjump", 8) == 0) {
            jmp_buf env;
            if (setjmp(env) == 0)
                jump_here(env);
            printf("mainjumped\n");
        } else if (sscanf(line, "fork %d", &n) == 1) {
            pid_t parent = getpid();
            for (int i = 0; i < n; i++) {
                if (fork() == 0) {
                    for (int k = 0; k < 60000 && getppid() == parent; k++)
                        usleep(1000);
                    _exit(0);       /* no atexit: the child's socket stays */
                }
            }
            printf("forked %d\n", n);
        } else if (sscanf(line, "forkexec %d", &n) == 1) {
            int ok = 0;
            for (int i = 0; i < n; i++) {
                pid_t pid = fork();
                if (pid == 0) {
                    execlp("true", "true", (char *)NULL);
                    _exit(127);
                }
                int status;
                if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0)
                    ok++;
            }
            printf("execed %d\n", ok);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    return 0;
}
