"""Program types as data: what r1 points to (the context), its layout, and the rules for touching it.

- "raw" (the default): r1 = the run's mem, r2 = its length; mem is writable unless run read-only.
- "kprobe" (the seed, BPF_PROG_TYPE_KPROBE): r1 = an x86-64 `struct pt_regs` (21 u64 in kernel order,
  168 bytes), read-only: a store into it faults "store" in both engines. Loading one needs the runtime's
  kern_version (runtime.py checks it). The seed's access rule (inside the struct, reads only, aligned) is
  `valid_ctx_access`; at run time the region's bounds and read-only permission enforce the first two.

Each type is one `ProgType` row in `PROG_TYPES`: context layout and size, entry registers, read-only or not,
allowed helpers, what r0 means. The VM builds every run's context from the row (runenv.py), so a new program
type is a new row, not a new code path. `pt_regs(...)` builds one kprobe context (a 0-d numpy array of the
PT_REGS dtype), `pt_regs_array(n, ...)` a batch for VM.run_batch. Nothing here runs programs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LoadError

PT_REGS_FIELDS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si",
                  "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS = np.dtype([(f, "<u8") for f in PT_REGS_FIELDS])
_PT_REGS_FIELDS = PT_REGS.fields
assert _PT_REGS_FIELDS is not None
OFFSETS = {f: _PT_REGS_FIELDS[f][1] for f in PT_REGS_FIELDS}

# Function arguments at a kprobe on a function entry (x86-64 System V), the return value and stack/ip:
# the kernel's PT_REGS_PARM1..6, PT_REGS_RC, PT_REGS_SP, PT_REGS_IP.
PARM_REGS = ("di", "si", "dx", "cx", "r8", "r9")
PARM1, PARM2, PARM3, PARM4, PARM5, PARM6 = (OFFSETS[r] for r in PARM_REGS)
RC, SP, IP = OFFSETS["ax"], OFFSETS["sp"], OFFSETS["ip"]


def pt_regs(**regs: int) -> np.ndarray:
    """One pt_regs context, e.g. pt_regs(di=1, si=2, ip=0xffffffff81000000); unnamed registers are 0."""
    out = np.zeros((), dtype=PT_REGS)
    for name, value in regs.items():
        _field(name)
        out[name] = value & 0xFFFFFFFFFFFFFFFF
    return out


def pt_regs_array(n: int, **columns) -> np.ndarray:
    """n zeroed pt_regs records; columns (scalars or length-n arrays) fill registers by name."""
    out = np.zeros(n, dtype=PT_REGS)
    for name, values in columns.items():
        _field(name)
        out[name] = values
    return out


def _field(name: str) -> None:
    if name not in OFFSETS:
        raise KeyError(f"pt_regs has no register {name!r}; registers: {', '.join(PT_REGS_FIELDS)}")


@dataclass(frozen=True)
class CtxField:
    """One context field a program may touch: byte offset, size, whether it may be read/written, and what a
    load of it gives: kind "scalar" (a number), or a pointer the verifier tracks: "pkt" (packet start,
    `data`), "pkt_end" (`data_end`), "pkt_meta" (`data_meta`). A pointer field itself is never stored to:
    `write` on a "pkt" ("pkt_meta") field means the program may store into the packet data (metadata) it
    points to (the kernel's direct packet write, e.g. XDP and tc yes, cgroup_skb no)."""
    name: str
    off: int
    size: int
    read: bool = True
    write: bool = False
    kind: str = "scalar"


CTX_FIELD_KINDS = ("scalar", "pkt", "pkt_end", "pkt_meta")

# The kernel's UAPI context layouts for packet programs (offsets checked against <linux/bpf.h> with
# offsetof). One row per field: (name, offset, size, kind). Access rules per program type (which fields a
# socket filter, XDP or tc program may read or write) belong to the ProgType rows that use these tables.
SK_BUFF_SIZE = 192
SK_BUFF_LAYOUT = (
    ("len", 0, 4, "scalar"), ("pkt_type", 4, 4, "scalar"), ("mark", 8, 4, "scalar"),
    ("queue_mapping", 12, 4, "scalar"), ("protocol", 16, 4, "scalar"), ("vlan_present", 20, 4, "scalar"),
    ("vlan_tci", 24, 4, "scalar"), ("vlan_proto", 28, 4, "scalar"), ("priority", 32, 4, "scalar"),
    ("ingress_ifindex", 36, 4, "scalar"), ("ifindex", 40, 4, "scalar"), ("tc_index", 44, 4, "scalar"),
    ("cb", 48, 20, "scalar"), ("hash", 68, 4, "scalar"), ("tc_classid", 72, 4, "scalar"),
    ("data", 76, 4, "pkt"), ("data_end", 80, 4, "pkt_end"), ("napi_id", 84, 4, "scalar"),
    ("family", 88, 4, "scalar"), ("remote_ip4", 92, 4, "scalar"), ("local_ip4", 96, 4, "scalar"),
    ("remote_ip6", 100, 16, "scalar"), ("local_ip6", 116, 16, "scalar"), ("remote_port", 132, 4, "scalar"),
    ("local_port", 136, 4, "scalar"), ("data_meta", 140, 4, "pkt_meta"), ("flow_keys", 144, 8, "scalar"),
    ("tstamp", 152, 8, "scalar"), ("wire_len", 160, 4, "scalar"), ("gso_segs", 164, 4, "scalar"),
    ("sk", 168, 8, "scalar"), ("gso_size", 176, 4, "scalar"), ("tstamp_type", 180, 1, "scalar"),
    ("hwtstamp", 184, 8, "scalar"),
)
XDP_MD_SIZE = 24
XDP_MD_LAYOUT = (
    ("data", 0, 4, "pkt"), ("data_end", 4, 4, "pkt_end"), ("data_meta", 8, 4, "pkt_meta"),
    ("ingress_ifindex", 12, 4, "scalar"), ("rx_queue_index", 16, 4, "scalar"),
    ("egress_ifindex", 20, 4, "scalar"),
)


@dataclass(frozen=True)
class ProgType:
    """Everything the VM, both engines and (later) the verifier need to know about one program type.

    name: the kernel's type name ("raw" is ours: a bare memory buffer).
    ctx: what r1 points to (text for docs and messages).
    ctx_size / ctx_dtype: bytes and layout of the context when fixed (None: any length, as for "raw").
    ctx_readonly: stores into the context fault "store" in both engines.
    r2_is_len: entry registers: r1 = ctx always; r2 = the context's length, or 0. Both existing types pass the
      length (the JIT's entry derives region row 0 from r1/r2); the kernel leaves r2 undefined for kprobes.
    needs_kern_version: loading needs Program.kern_version == Runtime.kern_version (the seed's rule).
    helpers: helper ids a program of this type may call (None: any registered helper).
    returns: what r0 means to the caller.
    fields: the context's fields with their access rules (empty when the layout is free).
    """
    name: str
    ctx: str
    ctx_size: int | None
    ctx_dtype: np.dtype | None
    ctx_readonly: bool
    r2_is_len: bool
    needs_kern_version: bool
    helpers: frozenset | None
    returns: str
    fields: tuple[CtxField, ...] = ()
    ret_range: tuple[int, int] | None = None     # r0's range at exit (check_return_code); None: any


PROG_TYPES = {
    "raw": ProgType(
        "raw", "mem (r2 = its length)", None, None, ctx_readonly=False, r2_is_len=True,
        needs_kern_version=False, helpers=None, returns="any 64-bit value (0 = drop, non-zero = keep in filters)"),
    "kprobe": ProgType(
        "kprobe", "struct pt_regs (x86-64)", PT_REGS.itemsize, PT_REGS, ctx_readonly=True, r2_is_len=True,
        needs_kern_version=True, helpers=None,
        returns="0 = drop the event, non-zero = keep it (the runtime's event ring)",
        fields=tuple(CtxField(f, OFFSETS[f], 8) for f in PT_REGS_FIELDS)),
}


def prog_type(name: str) -> ProgType:
    """The ProgType called `name`; LoadError for an unknown name (listing the known ones)."""
    t = PROG_TYPES.get(name) if isinstance(name, str) else None
    if t is None:
        raise LoadError(f"unknown program type {name!r}; known: {', '.join(PROG_TYPES)}", None, "prog_type")
    return t


def valid_ctx_access(ptype: ProgType, off: int, size: int, write: bool) -> bool:
    """The seed's kprobe_prog_is_valid_access for any type: inside the context, no writes to a read-only
    one, naturally aligned when the layout is fixed."""
    if ptype.ctx_size is not None and not (0 <= off and off + size <= ptype.ctx_size):
        return False
    if write and ptype.ctx_readonly:
        return False
    return ptype.ctx_dtype is None or off % size == 0
