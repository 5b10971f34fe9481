/* Test-only: record the name of every DSU function entered (see test_build.py). */
void psu_test_note(const char *name);
/* psu_fast.h calls this hook wherever a call reads its function's slot. */
#define PSU_TEST_SLOT_READ(fn) psu_test_note((fn)->name)
