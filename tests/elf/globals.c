/* Global data in .data, .rodata and .bss, read and written by two programs in one section. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

volatile const __u64 scale = 3;			/* .rodata */
const char greeting[8] = "hi there";		/* .rodata */
__u64 total = 100;				/* .data */
__u32 counter;					/* .bss */
__u64 last[4];					/* .bss */

SEC("kprobe/accumulate")
int accumulate(void *ctx)
{
	__u64 v = ((__u64 *)ctx)[14];

	total += v * scale;
	last[counter & 3] = v;
	counter++;
	return greeting[1];
}

SEC("kprobe/accumulate")
int read_total(void *ctx)
{
	return (int)total;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("kprobe/say")
int say_hi(void *ctx)
{
	bpf_printk("hi %d", (int)((__u64 *)ctx)[14]);	/* format string in .rodata.str1.1 */
	return 0;
}
