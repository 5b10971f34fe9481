#include "units.h"

/* a body a macro writes */
#define GETTER(name, value) int name(void) { return value; }
GETTER(delta_made, 44)

int delta_value(void)
{
    return 4;
}
