"""Issue 10: what to do about a changed type of existing state, live:
- shadow data: a patch attaches a new field to objects that already exist
  (runtime/psu_shadow.c) instead of changing their layout, and the field
  outlives the bundle that attached it;
- a member renamed with the same layout is refused, and applied (state kept)
  once the build names the type in PSU_ACCEPT."""
import pytest

from projects import Process, Project

SCONSTRUCT = """\
env = Environment(tools=['default', 'psu'])
env.Append(CCFLAGS=['-O2', '-Wall'], CFLAGS=['-std=gnu11'])
accept = [name for name in ARGUMENTS.get('ACCEPT', '').split(',') if name]
env.PSUProgram('bank', Glob('src/*.c'), PSU_UNITS=['src/bank.c'], PSU_ACCEPT=accept)
"""

BANK_C = """\
#include <stdio.h>
#include <string.h>
#include "psu.h"
struct account { int balance; };
static struct account accounts[4];
enum { DEPOSITS = 1 };          /* the id of the shadow field this program's patches use */

static void note_deposit(struct account *account) { (void)account; }

void handle(const char *command, char *out, unsigned long size)
{
    int which = 0, amount = 0;
    if (sscanf(command, "deposit %d %d", &which, &amount) == 2 && which >= 0 && which < 4) {
        accounts[which].balance += amount;
        note_deposit(&accounts[which]);
        snprintf(out, size, "balance %d", accounts[which].balance);
    } else if (sscanf(command, "deposits %d", &which) == 1 && which >= 0 && which < 4) {
        int *deposits = psu_shadow_get(&accounts[which], DEPOSITS);
        snprintf(out, size, "deposits %d", deposits ? *deposits : -1);
    } else
        snprintf(out, size, "unknown %s", command);
}
"""

MAIN_C = """\
#include <stdio.h>
#include <string.h>
void handle(const char *command, char *out, unsigned long size);
int main(void)
{
    char line[256], out[256];
    printf("ready\\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\\n")] = 0;
        handle(line, out, sizeof out);
        printf("%s\\n", out);
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = Project(tmp_path_factory.mktemp("shadow") / "repo")
    project.commit("v1", {"SConstruct": SCONSTRUCT, "src/bank.c": BANK_C, "src/main.c": MAIN_C})
    # v2: each account counts its deposits, in a field attached beside it
    counted = BANK_C.replace(
        "static void note_deposit(struct account *account) { (void)account; }",
        "static void note_deposit(struct account *account)\n{\n"
        "    int *deposits = psu_shadow_alloc(account, DEPOSITS, sizeof *deposits);\n"
        "    if (deposits)\n        ++*deposits;\n}")
    project.commit("v2", {"src/bank.c": counted})
    # v3: another change; v2's bundle is unloaded, the field stays
    project.commit("v3", {"src/bank.c": counted.replace('size, "deposits %d"', 'size, "deposits: %d"')})
    # renamed: the member keeps its type and place
    project.commit("renamed", {"src/bank.c": BANK_C.replace("balance", "funds")})
    project.checkout("v1")
    project.build()
    project.patch("v1", "v2")
    project.patch("v2", "v3")
    return project


def test_a_patch_attaches_a_field_to_existing_objects_and_it_outlives_the_bundle(project, tmp_path):
    process = Process([project.root / "bank"], project.root, tmp_path / "run", stdin=True)

    ask = process.ask

    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()
        assert ask("deposit 2 50") == "balance 50" and ask("deposits 2") == "deposits -1"
        done = process.psu("apply", process.pid, project.bundle("bank", "v1", "v2"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert ask("deposit 2 5") == "balance 55" and ask("deposit 2 5") == "balance 60"
        assert ask("deposits 2") == "deposits 2" and ask("deposits 1") == "deposits -1"
        done = process.psu("apply", process.pid, project.bundle("bank", "v2", "v3"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert ask("deposit 2 1") == "balance 61" and ask("deposits 2") == "deposits: 3"
    finally:
        process.stop()


def test_a_renamed_member_is_applied_only_when_the_build_accepts_its_type(project, tmp_path):
    refused = project.patch("v1", "renamed", check=False)
    assert refused.returncode == 3
    assert ("src/bank.c:4: type: struct account: balance renamed funds, same layout; existing state "
            "holds it: reached by 1 variable(s) (src/bank.c:accounts); the patch's functions using "
            "it: handle (to accept: PSU_ACCEPT=['type:struct account'])") in refused.stderr
    project.patch("v1", "renamed", extra=["ACCEPT=type:account"])
    process = Process([project.root / "bank"], project.root, tmp_path / "run", stdin=True)

    ask = process.ask

    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()
        assert ask("deposit 1 7") == "balance 7"
        done = process.psu("apply", process.pid, project.bundle("bank", "v1", "renamed"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert ask("deposit 1 3") == "funds 10"
    finally:
        process.stop()
