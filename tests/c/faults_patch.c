/* faults_patch.c - the code object of a bundle for tests/c/faults.c:
 * version VERSION of answer, thrower and coro_step (thrower(4) ends the
 * thread by pthread_exit inside the call).  Built -O2, and with
 * -D_FORTIFY_SOURCE=2 its longjmp calls become __longjmp_chk. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <ucontext.h>
#include "psu_bundle_abi.h"

#define STR2(x) #x
#define STR(x) STR2(x)

extern sigjmp_buf faults_jump_buf;
extern ucontext_t faults_main_context, faults_coro_context;

__attribute__((aligned(PSU_CODE_ALIGN))) static int answer_v(int x)
{
    return VERSION * 1000 + x;
}

__attribute__((aligned(PSU_CODE_ALIGN))) static void thrower_v(int how)
{
    switch (how) {
    case 0: longjmp(faults_jump_buf, 1);
    case 1: siglongjmp(faults_jump_buf, 1);
    case 2: _longjmp(faults_jump_buf, 1);
    case 4: pthread_exit(NULL);  /* the thread ends inside the call */
    default: raise(SIGUSR2);    /* its handler siglongjmps, on the alternate stack */
    }
}

__attribute__((aligned(PSU_CODE_ALIGN))) static int coro_step_v(void)
{
    printf("coro in v" STR(VERSION) "\n");
    fflush(stdout);
    swapcontext(&faults_coro_context, &faults_main_context);
    return VERSION;
}


const struct psu_bundle_function psu_bundle_functions[] = {
    { "faults.c:answer", (void *)answer_v },
    { "faults.c:thrower", (void *)thrower_v },
    { "faults.c:coro_step", (void *)coro_step_v },
    { 0, 0 },
};
