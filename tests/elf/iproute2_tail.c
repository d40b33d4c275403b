/* iproute2 / cilium era: a prog_array bpf_elf_map with an id, tail-call programs in sections "ID/KEY" that
 * tc puts into slot KEY of the map with that id, a classifier entry point. */
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

#define JMP_MAP_ID 1

struct bpf_elf_map SEC("maps") jmp_map = {
	.type = BPF_MAP_TYPE_PROG_ARRAY,
	.id = JMP_MAP_ID,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u32),
	.max_elem = 4,
};

SEC("1/0")
int tail_zero(void *skb)
{
	return 10;
}

SEC("1/2")
int tail_two(void *skb)
{
	return 12;
}

SEC("classifier")
int cls_entry(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &jmp_map, skb->len & 3);
	return 99;
}

char __license[] SEC("license") = "GPL";
