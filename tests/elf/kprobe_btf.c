/* libbpf style: a kprobe counting calls per first argument in a BTF-defined hash map. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("kprobe/do_sys_open")
int handle_open(void *ctx)
{
	__u32 key = (__u32)((__u64 *)ctx)[14];	/* pt_regs->di */
	__u64 one = 1, *val;

	val = bpf_map_lookup_elem(&counts, &key);
	if (val) {
		__sync_fetch_and_add(val, 1);
		return 2;
	}
	bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	return 1;
}

SEC("kretprobe/do_sys_open")
int handle_ret(void *ctx)
{
	return (int)((__u64 *)ctx)[10] + 1;	/* pt_regs->ax + 1 */
}

char LICENSE[] SEC("license") = "GPL";
