/* A call to an unknown extern function (refused at load, naming the symbol), and a recursive subprogram
 * (refused), next to a program that loads. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int mystery_func(int x) __ksym;

__attribute__((noinline)) int ping(int n);

__attribute__((noinline)) int pong(int n)
{
	if (n <= 0)
		return 0;
	return (int)bpf_get_prandom_u32() + ping(n - 1);
}

__attribute__((noinline)) int ping(int n)
{
	if (n <= 0)
		return 1;
	return pong(n - 1) * 3;
}

SEC("kprobe/ext")
int calls_extern(void *ctx)
{
	return mystery_func(3);
}

SEC("kprobe/rec")
int calls_recursive(void *ctx)
{
	return ping((int)((__u64 *)ctx)[14]);
}

SEC("kprobe/fine")
int fine(void *ctx)
{
	return 5;
}

char LICENSE[] SEC("license") = "GPL";
