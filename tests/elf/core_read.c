/* CO-RE style (libbpf-bootstrap with vmlinux.h): BPF_CORE_READ through preserve_access_index structs. The
 * .BTF.ext field relocations are not applied by bpfjit: the program runs with the offsets clang computed
 * from these local definitions. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

SEC("kprobe/wake_up_new_task")
int parent_tgid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)((unsigned long *)ctx)[14];	/* pt_regs->di */

	return BPF_CORE_READ(task, real_parent, tgid);
}

char LICENSE[] SEC("license") = "GPL";
