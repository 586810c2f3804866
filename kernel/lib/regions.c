// Region names for reports, from the generated region table (include/km/layout.h).
#include <km/layout.h>
#include <stdint.h>

#include "arch/trap.h"

struct region_entry {
    uint64_t start, end;   // inclusive end
    const char *name;
};

static const struct region_entry regions[KM_REGION_COUNT] = {KM_REGION_TABLE_INIT};

const char *region_name(uint64_t addr)
{
    // The table lists inner regions after the regions containing them, so the last match wins.
    const char *name = "none";
    for (unsigned i = 0; i < KM_REGION_COUNT; i++) {
        if (addr >= regions[i].start && addr <= regions[i].end)
            name = regions[i].name;
    }
    return name;
}
