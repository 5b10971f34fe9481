/* Test-only: record the name of every DSU function entered (see test_build.py). */
void psu_test_note(const char *name);
/* psu_fast.h calls this hook in psu_enter, where `fn` is the entered function. */
#define PSU_TEST_RACE_WINDOW() psu_test_note(fn->name)
