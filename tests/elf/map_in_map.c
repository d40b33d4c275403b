/* Map-in-map: an array_of_maps with an inner map definition and `values` naming maps (tests/test_elf.py
 * parses it, tests/test_map_in_map.py loads and runs it). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
};

struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { &inner_b, &inner_a },
};

SEC("kprobe/mim")
int lookup_inner(void *ctx)
{
	__u32 k = 0, *v;
	void *m = bpf_map_lookup_elem(&outer, &k);

	if (!m)
		return 0;
	v = bpf_map_lookup_elem(m, &k);
	return v ? *v : 1;
}

SEC("kprobe/direct")
int use_inner_a(void *ctx)
{
	__u32 k = 1, *v = bpf_map_lookup_elem(&inner_a, &k);

	if (v)
		*v += 3;
	return 4;
}

char LICENSE[] SEC("license") = "GPL";
