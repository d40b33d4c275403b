"""Program types from ELF section names, as libbpf maps them (its section_defs table), as data.

`prog_type_of(section)` returns the kernel's program type name ("kprobe", "socket_filter", "xdp", ...) or
None for a section libbpf does not know. kprobe/kretprobe/uprobe/ksyscall sections are all "kprobe" (the
kernel's BPF_PROG_TYPE_KPROBE). Whether a type can run is decided at load time by progtypes.PROG_TYPES; no
type is refused here.
"""
from __future__ import annotations

# (section prefix, program type, how the name must match):
#   "exact"  - the whole name, or the prefix followed by "/..." (libbpf's SEC_ATTACHABLE / plain names)
#   "sloppy" - any name starting with the prefix (the legacy samples/bpf and iproute2 convention:
#              "socket1", "xdp_prog", "kprobe_sys_write" ...)
# The first matching row wins, so longer prefixes come first.
SECTION_TYPES: tuple[tuple[str, str, str], ...] = (
    ("kretprobe.multi", "kprobe", "exact"),
    ("kprobe.multi", "kprobe", "exact"),
    ("uretprobe.multi", "kprobe", "exact"),
    ("uprobe.multi", "kprobe", "exact"),
    ("kretprobe", "kprobe", "sloppy"),
    ("kprobe", "kprobe", "sloppy"),
    ("uretprobe", "kprobe", "exact"),
    ("uprobe", "kprobe", "exact"),
    ("kretsyscall", "kprobe", "exact"),
    ("ksyscall", "kprobe", "exact"),
    ("usdt", "kprobe", "exact"),
    ("tc/ingress", "sched_cls", "exact"),
    ("tc/egress", "sched_cls", "exact"),
    ("tcx/ingress", "sched_cls", "exact"),
    ("tcx/egress", "sched_cls", "exact"),
    ("tc", "sched_cls", "exact"),
    ("classifier", "sched_cls", "sloppy"),
    ("action", "sched_act", "sloppy"),
    ("tracepoint", "tracepoint", "sloppy"),
    ("tp_btf", "tracing", "exact"),
    ("tp", "tracepoint", "exact"),
    ("raw_tracepoint.w", "raw_tracepoint_writable", "exact"),
    ("raw_tp.w", "raw_tracepoint_writable", "exact"),
    ("raw_tracepoint", "raw_tracepoint", "sloppy"),
    ("raw_tp", "raw_tracepoint", "exact"),
    ("fentry", "tracing", "exact"),
    ("fmod_ret", "tracing", "exact"),
    ("fexit", "tracing", "exact"),
    ("iter", "tracing", "exact"),
    ("freplace", "ext", "exact"),
    ("lsm", "lsm", "exact"),
    ("xdp.frags", "xdp", "exact"),
    ("xdp", "xdp", "sloppy"),
    ("perf_event", "perf_event", "sloppy"),
    ("lwt_in", "lwt_in", "exact"),
    ("lwt_out", "lwt_out", "exact"),
    ("lwt_xmit", "lwt_xmit", "exact"),
    ("lwt_seg6local", "lwt_seg6local", "exact"),
    ("sockops", "sock_ops", "exact"),
    ("sk_skb", "sk_skb", "exact"),
    ("sk_msg", "sk_msg", "exact"),
    ("sk_lookup", "sk_lookup", "exact"),
    ("sk_reuseport", "sk_reuseport", "exact"),
    ("lirc_mode2", "lirc_mode2", "exact"),
    ("flow_dissector", "flow_dissector", "exact"),
    ("cgroup_skb", "cgroup_skb", "exact"),
    ("cgroup/skb", "cgroup_skb", "exact"),
    ("cgroup/sock_create", "cgroup_sock", "exact"),
    ("cgroup/sock_release", "cgroup_sock", "exact"),
    ("cgroup/sock", "cgroup_sock", "exact"),
    ("cgroup/post_bind", "cgroup_sock", "exact"),
    ("cgroup/dev", "cgroup_device", "exact"),
    ("cgroup/sysctl", "cgroup_sysctl", "exact"),
    ("cgroup/getsockopt", "cgroup_sockopt", "exact"),
    ("cgroup/setsockopt", "cgroup_sockopt", "exact"),
    ("cgroup/", "cgroup_sock_addr", "sloppy"),          # bind4, connect6, sendmsg4, recvmsg6 ...
    ("struct_ops", "struct_ops", "exact"),
    ("syscall", "syscall", "exact"),
    ("netfilter", "netfilter", "exact"),
    ("socket", "socket_filter", "sloppy"),
)


def prog_type_of(section: str) -> str | None:
    """The program type libbpf gives a program in `section` (None: unknown section name)."""
    for prefix, ptype, how in SECTION_TYPES:
        if section == prefix or section.startswith(prefix + "/") or \
                (how == "sloppy" and section.startswith(prefix)):
            return ptype
    return None
