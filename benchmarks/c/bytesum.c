/* bytesum: sum of the len bytes at mem (programs/bytesum.asm). */
#include "bench.h"

static uint64_t run(const uint8_t *mem, uint64_t len)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < len; i++)
        sum += mem[i];
    return sum;
}
