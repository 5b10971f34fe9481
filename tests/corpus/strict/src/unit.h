#ifndef UNIT_H
#define UNIT_H
#include <stddef.h>

void handle(const char *command, char *out, size_t size);
int total_calls(void);
int banner_size(void);
/* kept for old callers; nothing in this program calls it */
int old_api(int x) __attribute__((deprecated));
void old_log(const char *text) __attribute__((deprecated));

#endif
