/* Constant data defined by a header that only table.c includes (zlib's
 * trees.h is such a header), hidden as a library's internal tables are: the
 * running program does not export it, so a bundle must have its own copy. */
#define TABLE_INTERNAL __attribute__((visibility("hidden")))
const unsigned char TABLE_INTERNAL lookup_table[4] = { 5, 6, 7, 8 };
