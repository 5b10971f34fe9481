/* The DSU unit's own declarations: hidden, as Lua's LUAI_FUNC makes them. */
#ifndef CORE_INTERNAL_H
#define CORE_INTERNAL_H

#define CORE_FUNC __attribute__((visibility("hidden"))) extern

CORE_FUNC int core_scale(int x);

/* constant data of another DSU unit (table.c) */
#define CORE_DATA __attribute__((visibility("hidden"))) extern
CORE_DATA const int core_weights[4];

#endif
