/* filter: the event filter of programs/filter.asm over one 64-byte record; 1 = keep. */
#include "bench.h"
#include <string.h>

static uint64_t load(const uint8_t *p, int size)
{
    uint64_t v = 0;
    memcpy(&v, p, size);            /* little-endian host, unaligned-safe */
    return v;
}

static uint64_t run(const uint8_t *m, uint64_t len)
{
    if (len < 64) return 0;
    if (load(m + 0, 4) <= 1) return 0;                        /* pid */
    if (load(m + 4, 4) == 0) return 0;                        /* uid */
    uint64_t type = load(m + 16, 2);
    if (type != 3 && type != 7) return 0;
    if (load(m + 18, 2) & 0x4) return 0;                      /* flags */
    uint64_t size = load(m + 20, 4);
    if (size < 128 || size > 65536) return 0;
    if (load(m + 24, 4) != 0x68736162) return 0;              /* comm starts with "bash" */
    if (load(m + 40, 8) == 0xdeadbeef00ull) return 0;         /* cgroup */
    if (load(m + 48, 4) >= 64) return 0;                      /* cpu */
    return 1;
}
