/* bpf-to-bpf calls: static and global subprograms in .text, shared by two programs. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __attribute__((noinline)) __u64 square(__u64 x)
{
	return x * x;
}

__attribute__((noinline)) int add3(int a, int b, int c)
{
	return a + b + c + (int)square(2);
}

static __attribute__((noinline)) __u64 sum_squares(__u64 n)
{
	__u64 s = 0;

	for (__u64 i = 1; i <= n && i < 64; i++)
		s += square(i);
	return s;
}

SEC("kprobe/calls_a")
int prog_a(void *ctx)
{
	__u64 n = ((__u64 *)ctx)[14];

	return (int)sum_squares(n) + add3(1, 2, 3);
}

SEC("kprobe/calls_b")
int prog_b(void *ctx)
{
	__u64 x = ((__u64 *)ctx)[13];	/* si */

	return add3((int)x, 10, 20);
}

char LICENSE[] SEC("license") = "GPL";

/* a subprogram touching a map and global data: its relocations move with it into each caller */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sums SEC(".maps");

__u64 calls_made;

static __attribute__((noinline)) int record(__u32 slot, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&sums, &slot);

	calls_made++;
	if (!p)
		return -1;
	*p += v;
	return (int)*p;
}

SEC("kprobe/calls_c")
int prog_c(void *ctx)
{
	__u64 v = ((__u64 *)ctx)[14];

	record(1, v);
	return record(0, square(v));
}
