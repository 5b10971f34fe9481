/* state.c - the state object of a test bundle: a variable the bundle adds
 * and the slot and general path of a function it adds (app.c:added), as the
 * generator would write them.  Never unloaded. */
#include "psu_fast.h"
#include "psu_bundle_abi.h"

int added_base = 500;

struct psu_function app_added_record = { PSU_NO_VERSION, "app.c:added", 0, 0 };
struct psu_function *psu_state_functions[] = { &app_added_record, 0 };

int added(int x)
{
    struct psu_call c = psu_enter(&app_added_record);
    int r = ((int (*)(int))c.code)(x);
    psu_leave(c);
    return r;
}
