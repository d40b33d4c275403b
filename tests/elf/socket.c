/* A socket filter: parses as a spec of type socket_filter (loads once that type exists). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_count SEC(".maps");

SEC("socket")
int count_protocols(void *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&proto_count, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("xdp")
int xdp_pass(void *ctx)
{
	return 2;	/* XDP_PASS */
}

char LICENSE[] SEC("license") = "GPL";
