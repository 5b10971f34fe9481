#include "table.h"
#include "table_data.h"

int table_size(void)
{
    return (int)sizeof lookup_table;
}
