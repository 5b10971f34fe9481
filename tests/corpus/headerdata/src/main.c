#include <stdio.h>
#include <string.h>

int user_value(int index);

int main(void)
{
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "value", 5) == 0)
            printf("%d %d\n", user_value(1), user_value(2));
        else
            printf("?\n");
    }
    return 0;
}
