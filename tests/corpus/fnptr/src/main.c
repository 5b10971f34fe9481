/* Plain unit: stdin lines are commands, one answer line each.
 *   install | call N | version */
#include <stdio.h>
#include <string.h>
#include "cb.h"
int main(void)
{
    char line[256];
    int n;
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "install", 7) == 0) { install(); printf("installed\n"); }
        else if (sscanf(line, "call %d", &n) == 1) printf("%d\n", call(n));
        else if (strncmp(line, "version", 7) == 0) printf("%d\n", version());
        else printf("?\n");
        fflush(stdout);
    }
    return 0;
}
