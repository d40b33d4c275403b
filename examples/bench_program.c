/* A kprobe program for examples/bench_program.py: count calls per pid bucket, keep slow ones (arg 2 > 1000). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} buckets SEC(".maps");

SEC("kprobe/do_sys_read")
int slow_reads(struct pt_regs *ctx)
{
	__u32 key = PT_REGS_PARM1(ctx) & 63;
	__u64 *v = bpf_map_lookup_elem(&buckets, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return PT_REGS_PARM2(ctx) > 1000;
}

char LICENSE[] SEC("license") = "GPL";
