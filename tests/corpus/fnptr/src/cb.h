void install(void);
int call(int x);
int version(void);
