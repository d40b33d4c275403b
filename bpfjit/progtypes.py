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
    `data`), "pkt_end" (`data_end`), "pkt_meta" (`data_meta`). A pointer field itself is never stored to;
    whether the program may store into the packet it points to is `ProgType.pkt_write` (the kernel's direct
    packet write: XDP and tc yes, cgroup_skb no)."""
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
    packet: str | None = None       # "skb" / "xdp": a packet program (run over packets, packets.py)
    pkt_write: bool = False         # direct packet access may store (xdp, tc)
    hidden: tuple = ()              # internal context: (name, offset) of the hidden u64 fields after the UAPI
    kctx_size: int = 0              # bytes of the internal context (UAPI layout + hidden fields)
    ret_range: tuple[int, int] | None = None     # r0's range at exit (check_return_code); None: any

    def field_at(self, off: int) -> CtxField | None:
        """The field containing byte `off` of the context, None if none does."""
        for f in self.fields:
            if f.off <= off < f.off + f.size:
                return f
        return None

    def hidden_off(self, name: str) -> int:
        return dict(self.hidden)[name]


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


# ---- packet program types (socket filter, XDP, tc, cgroup skb) ----
# Return values (the kernel's enum xdp_action and TC_ACT_*): what r0 means to the caller.
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
XDP_ACTIONS = ("XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT")
TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_RECLASSIFY, TC_ACT_SHOT, TC_ACT_PIPE = -1, 0, 1, 2, 3
TC_ACT_STOLEN, TC_ACT_QUEUED, TC_ACT_REPEAT, TC_ACT_REDIRECT = 4, 5, 6, 7
TC_ACTIONS = {-1: "TC_ACT_UNSPEC", 0: "TC_ACT_OK", 1: "TC_ACT_RECLASSIFY", 2: "TC_ACT_SHOT", 3: "TC_ACT_PIPE",
              4: "TC_ACT_STOLEN", 5: "TC_ACT_QUEUED", 6: "TC_ACT_REPEAT", 7: "TC_ACT_REDIRECT"}
XDP_PACKET_HEADROOM = 256        # bytes before data in every XDP packet buffer (adjust_head / adjust_meta)
XDP_TAILROOM = 256               # bytes after data_end (adjust_tail may grow into them)
SKB_TAILROOM = 256               # bytes after data_end of an skb (skb_change_tail may grow into them)
SKF_NET_OFF, SKF_LL_OFF = -0x100000, -0x200000     # LD_ABS/LD_IND: network / link-layer header relative
NET_HEADER_OFF = 14              # network header of an AF_PACKET frame (after the Ethernet header)

# The internal context a run builds (the kernel's sk_buff / xdp_buff): the UAPI struct, then hidden u64
# fields at 8-aligned offsets. ctxrewrite.py turns each 4-byte load of data/data_end/data_meta through the
# context pointer into an 8-byte load of the hidden field ("data" ...); "index" is the packet's index in
# its batch (helpers use it), "head"/"end" bound the packet's buffer (head/tailroom included).
HIDDEN_FIELDS = ("data", "data_end", "data_meta", "index", "head", "end")


def _hidden(uapi_size: int) -> tuple:
    base = (uapi_size + 7) & ~7
    return tuple((name, base + 8 * i) for i, name in enumerate(HIDDEN_FIELDS))


def _fields(layout, readable, writable) -> tuple:
    """CtxField rows of a UAPI layout: fields in `readable` (all when None) are readable, `writable` ones
    writable; others are listed unreadable (an access to them is refused at load)."""
    return tuple(CtxField(n, off, size, read=readable is None or n in readable, write=n in writable, kind=k)
                 for n, off, size, k in layout)


_SKB_ALL = {n for n, *_ in SK_BUFF_LAYOUT}
_SOCK_FIELDS = {"family", "remote_ip4", "local_ip4", "remote_ip6", "local_ip6", "remote_port", "local_port"}
_SKB_TIME = {"tstamp", "wire_len", "hwtstamp", "tstamp_type"}
# helper ids each packet type may call (the kernel's *_func_proto, for the helpers bpfjit has)
BASE_HELPERS = frozenset({1, 2, 3, 5, 6, 7, 8, 12, 87, 88, 89, 118, 125, 130, 131, 132, 133, 134})
SKB_HELPERS = BASE_HELPERS | {25, 26, 34, 46}
TC_HELPERS = SKB_HELPERS | {9, 10, 11, 23, 28, 38, 39, 51}
XDP_HELPERS = BASE_HELPERS | {25, 23, 28, 44, 51, 54, 65}
CGROUP_SKB_HELPERS = SKB_HELPERS


def _skb_type(name, readable, writable, helpers, returns, pkt_read, pkt_write, ret_range=None):
    if not pkt_read:
        readable = set(readable) - {"data", "data_end", "data_meta"}
    return ProgType(name, "struct __sk_buff", SK_BUFF_SIZE, None, ctx_readonly=not writable, r2_is_len=True,
                    needs_kern_version=False, helpers=frozenset(helpers), returns=returns,
                    fields=_fields(SK_BUFF_LAYOUT, readable, writable), packet="skb", pkt_write=pkt_write,
                    hidden=_hidden(SK_BUFF_SIZE), kctx_size=_hidden(SK_BUFF_SIZE)[-1][1] + 8, ret_range=ret_range)


PACKET_TYPES = {
    "socket_filter": _skb_type(
        "socket_filter", _SKB_ALL - _SOCK_FIELDS - _SKB_TIME - {"tc_classid", "flow_keys", "data_meta"}, {"cb"},
        SKB_HELPERS, "bytes of the packet to keep (0 = drop; more than its length keeps all of it)",
        pkt_read=False, pkt_write=False),
    "sched_cls": _skb_type(
        "sched_cls", _SKB_ALL - _SOCK_FIELDS - {"flow_keys"},
        {"mark", "tc_index", "priority", "cb", "tc_classid", "tstamp", "queue_mapping"}, TC_HELPERS,
        "TC_ACT_* (0 OK, 2 SHOT, 7 REDIRECT, -1 UNSPEC ...)", pkt_read=True, pkt_write=True),
    "sched_act": _skb_type(
        "sched_act", _SKB_ALL - _SOCK_FIELDS - {"flow_keys"},
        {"mark", "tc_index", "priority", "cb", "tc_classid", "tstamp", "queue_mapping"}, TC_HELPERS,
        "TC_ACT_* (0 OK, 2 SHOT, 7 REDIRECT, -1 UNSPEC ...)", pkt_read=True, pkt_write=True),
    "cgroup_skb": _skb_type(
        "cgroup_skb", _SKB_ALL - {"tc_classid", "flow_keys", "data_meta"} - _SKB_TIME | {"tstamp"},
        {"mark", "priority", "cb", "tstamp"}, CGROUP_SKB_HELPERS,
        "1 = allow the packet, 0 = drop it", pkt_read=True, pkt_write=False, ret_range=(0, 1)),
    "xdp": ProgType(
        "xdp", "struct xdp_md", XDP_MD_SIZE, None, ctx_readonly=True, r2_is_len=True, needs_kern_version=False,
        helpers=XDP_HELPERS, returns="XDP_ABORTED 0, XDP_DROP 1, XDP_PASS 2, XDP_TX 3, XDP_REDIRECT 4",
        fields=_fields(XDP_MD_LAYOUT, None, ()), packet="xdp", pkt_write=True,
        hidden=_hidden(XDP_MD_SIZE), kctx_size=_hidden(XDP_MD_SIZE)[-1][1] + 8),
}
PROG_TYPES.update(PACKET_TYPES)


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
