/* Tail calls through a prog_array initialised from `values`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int step_one(void *ctx);
int step_two(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = {
		[1] = (void *)&step_one,
		[3] = (void *)&step_two,
	},
};

SEC("kprobe/step")
int step_one(void *ctx)
{
	return 100;
}

SEC("kprobe/step")
int step_two(void *ctx)
{
	return 200;
}

SEC("kprobe/dispatch")
int dispatch(void *ctx)
{
	__u32 idx = (__u32)((__u64 *)ctx)[14];

	bpf_tail_call(ctx, &jump_table, idx);
	return 7;	/* empty slot */
}

char LICENSE[] SEC("license") = "GPL";
