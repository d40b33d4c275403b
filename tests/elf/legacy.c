/* Old style (samples/bpf, clang 3.x era): struct bpf_map_def in SEC("maps"), one program per section, a
 * version section, an array of map definitions. */
#include <linux/bpf.h>
#include <linux/version.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") hits = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
};

struct bpf_map_def SEC("maps") pair[2] = {
	{ .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4 },
	{ .type = BPF_MAP_TYPE_PERCPU_ARRAY, .key_size = 4, .value_size = 16, .max_entries = 2 },
};

SEC("kprobe/sys_write")
int bpf_prog1(void *ctx)
{
	__u32 key = (__u32)((__u64 *)ctx)[14];
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&hits, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&hits, &key, &one, BPF_ANY);
	return 0;
}

SEC("kprobe/sys_read")
int bpf_prog2(void *ctx)
{
	__u32 key = 2;
	__u64 val = 42;

	bpf_map_update_elem(&pair[0], &key, &val, BPF_ANY);
	return 1;
}

char _license[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x050a00;
