/* Native repeat loop shared by the C baselines (included first by every baseline in this directory).
 *
 * Each baseline defines `static uint64_t run(const uint8_t *mem, uint64_t len)` after including this
 * header: the same algorithm as benchmarks/programs/<name>.asm. `bench` runs it n times, like the JIT's
 * bpf_bench loop. Its empty asm statements are compiler barriers: the first makes mem (and all memory)
 * opaque before every iteration so the work cannot be hoisted out of the loop; the second consumes each
 * result so no iteration is dead code.
 */
#ifndef BPFJIT_BENCH_H
#define BPFJIT_BENCH_H
#include <stdint.h>

#define OPAQUE(x) __asm__ volatile("" : "+r"(x))   /* the compiler forgets what it knew about x */

static uint64_t run(const uint8_t *mem, uint64_t len);

uint64_t run_once(const uint8_t *mem, uint64_t len) { return run(mem, len); }

uint64_t bench(const uint8_t *mem, uint64_t len, uint64_t n)
{
    uint64_t r = 0;
    for (uint64_t i = 0; i < n; i++) {
        __asm__ volatile("" : : "r"(mem) : "memory");
        r = run(mem, len);
        __asm__ volatile("" : : "r"(r));
    }
    return r;
}
#endif
