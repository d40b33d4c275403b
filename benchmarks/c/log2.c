/* log2: sum of floor(log2(x)) over the u64 values at mem (programs/log2.asm), the same branchy binary
 * search (not a count-leading-zeros instruction); log2(0) counts as 0. */
#include "bench.h"
#include <string.h>

#define STEP(k) do { uint64_t hi = x >> (k); if (hi != 0) { x = hi; r += (k); } } while (0)

static uint64_t ilog2(uint64_t x)
{
    uint64_t r = 0;
    STEP(32);
    STEP(16);
    STEP(8);
    STEP(4);
    STEP(2);
    return r + (x >> 1);
}

static uint64_t run(const uint8_t *mem, uint64_t len)
{
    uint64_t sum = 0;
    for (uint64_t off = 0; off + 8 <= len; off += 8) {
        uint64_t x;
        memcpy(&x, mem + off, 8);
        sum += ilog2(x);
    }
    return sum;
}
