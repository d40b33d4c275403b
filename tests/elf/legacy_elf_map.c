/* iproute2 style: struct bpf_elf_map (36 bytes, with pinning) in SEC("maps"), a tc classifier. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_elf_map {
	__u32 type;
	__u32 size_key;
	__u32 size_value;
	__u32 max_elem;
	__u32 flags;
	__u32 id;
	__u32 pinning;
	__u32 inner_id;
	__u32 inner_idx;
};

struct bpf_elf_map SEC("maps") acc_map = {
	.type = BPF_MAP_TYPE_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u32),
	.pinning = 2,	/* PIN_GLOBAL_NS */
	.max_elem = 2,
};

SEC("classifier")
int cls_main(void *skb)
{
	__u32 key = 0, *v = bpf_map_lookup_elem(&acc_map, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return -1;	/* TC_ACT_UNSPEC */
}

SEC("kprobe/noop")
int kp_noop(void *ctx)
{
	__u32 key = 1, *v = bpf_map_lookup_elem(&acc_map, &key);

	if (v)
		*v = 5;
	return 9;
}

char __license[] SEC("license") = "GPL";
