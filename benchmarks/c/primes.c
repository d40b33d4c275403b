/* primes: number of primes below 10000 by trial division (programs/primes.asm); mem is unused.
 * The limit goes through OPAQUE so the count cannot be computed once and reused across iterations. */
#include "bench.h"

static uint64_t run(const uint8_t *mem, uint64_t len)
{
    (void)mem; (void)len;
    uint64_t limit = 10000, count = 0;
    OPAQUE(limit);
    for (uint64_t n = 2; n < limit; n++) {
        uint64_t d = 2;
        for (; d * d <= n; d++)
            if (n % d == 0)
                break;
        if (d * d > n)
            count++;
    }
    return count;
}
