/* libbpf-bootstrap style: BPF_KPROBE from bpf_tracing.h, a ring buffer of events, a const volatile
 * configuration in .rodata, a tracepoint program next to the kprobe (parsed, refused until the runtime has
 * tracepoints). Built for x86 (pt_regs layout). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct event {
	__u32 pid;
	__u32 fd;
	__u64 count;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

const volatile __u64 min_count = 10;
__u64 dropped = 0;

SEC("kprobe/ksys_write")
int BPF_KPROBE(trace_write, unsigned int fd, const char *buf, __u64 count)
{
	struct event *e;

	if (count < min_count)
		return 0;
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e) {
		dropped++;
		return 0;
	}
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->fd = fd;
	e->count = count;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 1;
}

SEC("tp/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
