/* libpcap's own interpreter (bpf_filter) over fixed-size packet records, in a native loop: the baseline of
 * benchmarks/test_bench_packets.py. Linked against libpcap at build time (no headers needed). */
#include <stddef.h>

struct bpf_insn_ { unsigned short code; unsigned char jt, jf; unsigned int k; };
extern unsigned int bpf_filter(const struct bpf_insn_ *pc, const unsigned char *p, unsigned int wirelen,
                               unsigned int buflen);

size_t filter_records(const struct bpf_insn_ *prog, const unsigned char *recs, size_t stride,
                      const unsigned int *wirelens, size_t n, unsigned int *out)
{
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned int r = bpf_filter(prog, recs + i * stride, wirelens[i], (unsigned int)stride);
        out[i] = r;
        hits += r != 0;
    }
    return hits;
}
