/* DSU unit: constant data only, hidden. */
#include "core_internal.h"

const int core_weights[4] = { 1, 2, 3, 4 };
