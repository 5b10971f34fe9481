#define TABLE_INTERNAL __attribute__((visibility("hidden")))
extern const unsigned char TABLE_INTERNAL lookup_table[4];
int table_size(void);
