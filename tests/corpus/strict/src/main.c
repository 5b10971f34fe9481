/* Plain unit: each stdin line is a command for the DSU unit; its answer is printed. */
#include <stdio.h>
#include <string.h>
#include "unit.h"

int main(void)
{
    char line[256];
    char reply[256];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        handle(line, reply, sizeof reply);
        printf("%s\n", reply);
        fflush(stdout);
    }
    return 0;
}
