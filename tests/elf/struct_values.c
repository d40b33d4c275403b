/* BTF maps with struct keys and values (array and hash), updated field by field. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u32 last_len;
	__u8 proto;
	char tag[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
	__uint(map_flags, 1);	/* BPF_F_NO_PREALLOC */
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_stats);
	__uint(pinning, 1);	/* LIBBPF_PIN_BY_NAME */
} totals SEC(".maps");

SEC("kprobe/flow")
int record_flow(void *ctx)
{
	__u64 *regs = ctx;
	struct flow_key key = {};
	struct flow_stats init = {}, *st;
	__u32 zero = 0;
	__u32 len = (__u32)regs[12];	/* dx */

	key.saddr = (__u32)regs[14];
	key.daddr = (__u32)regs[13];
	key.sport = 80;
	key.dport = 443;
	st = bpf_map_lookup_elem(&flows, &key);
	if (!st) {
		init.proto = 6;
		init.tag[0] = 'o';
		init.tag[1] = 'k';
		bpf_map_update_elem(&flows, &key, &init, BPF_ANY);
		st = bpf_map_lookup_elem(&flows, &key);
		if (!st)
			return 0;
	}
	st->packets++;
	st->bytes += len;
	st->last_len = len;
	st = bpf_map_lookup_elem(&totals, &zero);
	if (st) {
		st->packets++;
		st->bytes += len;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
