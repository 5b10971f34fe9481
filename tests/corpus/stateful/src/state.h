#ifndef STATE_H
#define STATE_H
struct tally { int hits; int misses; };
/* Executes one command line; writes one reply line (no newline) into out. */
void handle(const char *command, char *out, unsigned long size);
void log_line(const char *fmt, ...);
#endif
