/* Typical libbpf-style tracing programs, built by clang -O2 (make -C tests/verifier/c), for the verifier:
 * 32-bit arithmetic on indexes (w registers), u32 loads, spills of 32-bit values under register pressure,
 * bounded loops clang keeps as loops, bpf_probe_read_kernel/_str into the stack and map values, a comm
 * filter loop, per-cpu counters, a ring buffer event, a hash map keyed by a struct, a tracepoint record.
 * Each program verifies (tests/test_verifier_elf.py); they run in checked mode on random pt_regs. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NSLOTS 64
#define COMM 16

struct hist { __u64 slots[NSLOTS]; };
struct key { __u32 pid; __u32 cpu; char comm[COMM]; };
struct event { __u32 pid; __u32 len; __u64 ts; char comm[COMM]; char data[32]; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
	 __type(value, struct hist); } hists SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 8); __type(key, __u32);
	 __type(value, __u64); } counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 128); __type(key, struct key);
	 __type(value, __u64); } bytes SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");

const volatile char target_comm[COMM] = "bash";

/* log2 histogram: a loop clang keeps (data-dependent trip count, at most 64), 32-bit index arithmetic */
SEC("kprobe/vfs_read")
int BPF_KPROBE(read_hist, void *file, void *buf, __u64 count)
{
	__u32 zero = 0, slot = 0;
	struct hist *h = bpf_map_lookup_elem(&hists, &zero);
	if (!h)
		return 0;
	for (int i = 0; i < NSLOTS && count > 1; i++) {
		count >>= 1;
		slot++;
	}
	if (slot >= NSLOTS)
		slot = NSLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	return 0;
}

/* a u32 argument used as an index after 32-bit arithmetic */
SEC("kprobe/cpu_count")
int BPF_KPROBE(cpu_count, unsigned int cpu)
{
	__u32 idx = (cpu * 3 + 1) & 7;
	__u64 *c = bpf_map_lookup_elem(&counts, &idx);
	if (c)
		*c += 1;
	return idx;
}

/* probe_read_kernel into a stack struct and a string into a map-value-sized stack buffer */
struct file_like { __u64 f_mode; __u32 flags; __u32 pad; const char *name; };

SEC("kprobe/do_open")
int BPF_KPROBE(open_event, struct file_like *f)
{
	struct file_like copy = {};
	struct event *e;
	long n;

	if (bpf_probe_read_kernel(&copy, sizeof(copy), f))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	n = bpf_probe_read_kernel_str(e->data, sizeof(e->data), copy.name);
	e->len = n > 0 ? (__u32)n : 0;
	if (copy.flags & 1)
		bpf_ringbuf_discard(e, 0);
	else
		bpf_ringbuf_submit(e, 0);
	return 0;
}

/* a comm filter: byte compare loop against .rodata, then a struct-keyed hash map */
SEC("kprobe/ksys_write")
int BPF_KPROBE(write_bytes, unsigned int fd, const char *buf, __u64 count)
{
	struct key k = {};
	__u64 *v, one;

	bpf_get_current_comm(k.comm, sizeof(k.comm));
	for (int i = 0; i < COMM; i++) {
		if (k.comm[i] != target_comm[i])
			return 0;
		if (k.comm[i] == 0)
			break;
	}
	k.pid = bpf_get_current_pid_tgid() >> 32;
	k.cpu = bpf_get_smp_processor_id();
	v = bpf_map_lookup_elem(&bytes, &k);
	if (v) {
		__sync_fetch_and_add(v, count);
	} else {
		one = count;
		bpf_map_update_elem(&bytes, &k, &one, BPF_NOEXIST);
	}
	return 0;
}

/* many live 32-bit values across calls: clang spills them as 32-bit stack slots */
SEC("kprobe/spill")
int BPF_KPROBE(spill32, unsigned int a, unsigned int b, unsigned int c, unsigned int d, unsigned int e)
{
	__u32 x = a * 7, y = b ^ 0x55, z = c + d, w = e >> 3;
	__u32 t = (__u32)bpf_ktime_get_ns();
	__u32 u = bpf_get_prandom_u32();
	__u32 idx = (x + y + z + w + t + u) % NSLOTS;
	__u32 zero = 0;
	struct hist *h = bpf_map_lookup_elem(&hists, &zero);

	if (!h)
		return 0;
	h->slots[idx] += x;
	h->slots[(idx + 1) % NSLOTS] += y;
	h->slots[z & (NSLOTS - 1)] += z;
	h->slots[w % NSLOTS] += w;
	return (int)(x ^ y ^ z ^ w);
}

/* a bounded loop over stack bytes copied from kernel memory, index kept in a w register */
SEC("kprobe/checksum")
int BPF_KPROBE(checksum, const unsigned char *p, unsigned int len)
{
	unsigned char buf[32];
	__u32 sum = 0;

	if (bpf_probe_read_kernel(buf, sizeof(buf), p))
		return 0;
	if (len > sizeof(buf))
		len = sizeof(buf);
	for (__u32 i = 0; i < len; i++)
		sum = (sum << 1) + buf[i];
	return sum;
}

/* a tracepoint record: read-only fields at fixed offsets */
struct exec_args { __u64 common; int __data_loc_filename; int pid; int old_pid; };

SEC("tp/sched/sched_process_exec")
int tp_exec(struct exec_args *ctx)
{
	__u32 idx = (__u32)ctx->pid & 7;
	__u64 *c = bpf_map_lookup_elem(&counts, &idx);
	if (c)
		__sync_fetch_and_add(c, 1);
	return ctx->old_pid != ctx->pid;
}

char LICENSE[] SEC("license") = "GPL";
