/* fnv1a: FNV-1a 64-bit hash of the len bytes at mem (programs/fnv1a.asm). */
#include "bench.h"

static uint64_t run(const uint8_t *mem, uint64_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < len; i++) {
        h ^= mem[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
