"""Packet runs (`VM.run_packets`): the input forms, the per-packet descriptors and contexts, for both engines.

A packet program (progtypes.PACKET_TYPES) runs once per packet. The input is many packets in one buffer:
a `bpfjit.pcap.Packets` (what `bpfjit.pcap.read` returns), a `(data, offsets, lengths)` tuple, a list of
bytes-like frames, or a 2-D uint8 array (one packet per row). `PacketRun` lays the packets out for the run:
in place in the caller's buffer when no packet may move or grow (numpy arrays and bytearrays are used in
place: stores into packets are visible there), else copied into one arena with XDP_PACKET_HEADROOM bytes
before and a tailroom after each packet so that xdp_adjust_head/meta/tail and skb_change_tail can move the
packet bounds. Before each packet's run an engine fills the internal context (`stores`: the hidden u64
fields data, data_end, data_meta, index, head, end; the UAPI copies; len, and protocol / pkt_type when the
program may read them, `header_values`) and points the packet region at [data_meta, data_end): every packet
access is checked against that region in checked mode (reads past data_end fault); LD_ABS/LD_IND read
[data, data_end). The JIT's native loop (jit/lower_pkt.py) computes the same values from the argument block
`args` (ARGS: buffer base, head/tailroom, the offsets and lengths arrays ...); the interpreter calls `load`.
While a packet runs, the context's hidden fields are its current bounds: helpers that move them call
`set_bounds` (context and packet region), and programs that may move them keep each packet's final bounds
in `bounds_out`. After the run `result()` is the packets as the program left them (a pcap.Packets over the
same memory), `redirects` records where redirect helpers sent packets.
Nothing here executes instructions.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .memory import PERM_R, PERM_RW
from .progtypes import (NET_HEADER_OFF, SKB_TAILROOM, XDP_PACKET_HEADROOM, XDP_TAILROOM)

# the per-packet values a run copies into the internal context (see `stores`)
VALUES = ("data", "data_end", "data_meta", "index", "head", "end", "len", "protocol", "pkt_type")
# the argument block of the JIT's bpf_run_pkts (uint64 each)
ARGS = ("base", "headroom", "tailroom", "offsets", "lengths", "bounds", "template", "out")
A = {name: i for i, name in enumerate(ARGS)}
IFINDEX = 1                 # ifindex / ingress_ifindex of every packet (one interface)
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST = 0, 1, 2
ROOM_HELPERS = ("xdp_adjust_head", "xdp_adjust_meta", "xdp_adjust_tail", "skb_change_tail")
ROOM_HELPER_IDS = frozenset({38, 44, 54, 65})     # their ids (the helper registry's)
TAIL_CALL = 12          # a tail-call target may move the bounds: programs that tail-call count as moving them
NET_HEADER = {"cgroup_skb": 0}      # where the network header starts in a packet (others: Ethernet frames)


def moves_bounds(program) -> bool:
    """May a helper call of `program` (or of a program it tail-calls) move a packet's bounds (the run then
    leaves head/tailroom, and the JIT keeps the packet in a region-table row it re-reads)?"""
    for pc, f in enumerate(program.forms):
        if f is not None and (f.op == "callx" or f.op == "call" and (program.insns[pc].imm in ROOM_HELPER_IDS or
                                                                     program.insns[pc].imm == TAIL_CALL)):
            return True
    return False


def needs_headers(program, ptype) -> bool:
    """Does the program (possibly) read skb->protocol or skb->pkt_type (computed from the packet's bytes
    before each run only then)?"""
    from .ctxrewrite import fields_read
    return ptype.packet == "skb" and bool(fields_read(program, ptype) & {"protocol", "pkt_type"})


def net_header_off(ptype) -> int:
    return NET_HEADER.get(ptype.name, NET_HEADER_OFF)


def stores(ptype, headers: bool = True) -> tuple:
    """(value name, context offset, size) of what each run copies into the internal context: the hidden u64
    fields, the low 32 bits of the packet pointers in the UAPI fields (see ctxrewrite.py), and for skb
    programs len / wire_len and (headers) protocol / pkt_type."""
    out = [(name, off, 8) for name, off in ptype.hidden]
    for f in ptype.fields:
        if f.kind in ("pkt", "pkt_end", "pkt_meta"):
            out.append(({"pkt": "data", "pkt_end": "data_end", "pkt_meta": "data_meta"}[f.kind], f.off, 4))
    if ptype.packet == "skb":
        names = {f.name: f.off for f in ptype.fields}
        out += [("len", names["len"], 4), ("len", names["wire_len"], 4)]
        if headers:
            out += [("protocol", names["protocol"], 4), ("pkt_type", names["pkt_type"], 4)]
    return tuple(out)


def header_values(pkt: bytes, nh: int) -> tuple[int, int]:
    """(skb->protocol as the context holds it (__be16 in memory order), skb->pkt_type) of one packet."""
    if nh == 0:                                  # an IP packet: protocol from the version nibble
        ver = pkt[0] >> 4 if pkt else 0
        return {4: 0x0008, 6: 0xDD86}.get(ver, 0), PACKET_HOST
    proto = pkt[12] | pkt[13] << 8 if len(pkt) >= 14 else 0
    if len(pkt) < 6 or not pkt[0] & 1:
        return proto, PACKET_HOST
    return proto, PACKET_BROADCAST if pkt[:6] == b"\xff" * 6 else PACKET_MULTICAST


def uapi_size(ptype) -> int:
    return ptype.hidden[0][1]


def template(ptype) -> np.ndarray:
    """The context values every packet starts with (fields not in the descriptor)."""
    t = np.zeros(uapi_size(ptype), dtype=np.uint8)
    names = {f.name: f.off for f in ptype.fields}
    for name, value in (("ifindex", IFINDEX), ("ingress_ifindex", IFINDEX), ("gso_segs", 1)):
        if name in names:
            t[names[name]:names[name] + 4] = np.frombuffer(np.uint32(value).tobytes(), np.uint8)
    return t


def as_input(packets) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(data uint8, offsets int64, lengths int64, writable in place?) of the accepted input forms."""
    from .pcap import Packets
    if isinstance(packets, Packets):
        return packets.data, packets.offsets, packets.lengths, bool(packets.data.flags.writeable)
    if isinstance(packets, np.ndarray):
        if packets.ndim != 2 or packets.dtype != np.uint8 or not packets.flags.c_contiguous:
            raise ConfigError(f"a numpy array of packets must be 2-D C-contiguous uint8 (one packet per row); "
                              f"got dtype {packets.dtype}, shape {packets.shape}", "packets")
        n, stride = packets.shape
        return (packets.reshape(-1), np.arange(n, dtype=np.int64) * stride, np.full(n, stride, np.int64),
                bool(packets.flags.writeable))
    if isinstance(packets, tuple) and len(packets) == 3 and isinstance(packets[0], np.ndarray):
        data, offsets, lengths = packets
        try:
            p = Packets(data, offsets, lengths)
        except Exception as e:  # noqa: BLE001 - PcapError or numpy's: one ConfigError
            raise ConfigError(f"(data, offsets, lengths): {e}", "packets") from None
        return p.data, p.offsets, p.lengths, bool(p.data.flags.writeable)
    if isinstance(packets, (list, tuple)):
        for i, f in enumerate(packets):
            if not isinstance(f, (bytes, bytearray, memoryview, np.ndarray)):
                raise ConfigError(f"packet {i} must be bytes-like; got {type(f).__name__}", "packets")
        p = Packets.from_list([bytes(f) if not isinstance(f, np.ndarray) else f.tobytes() for f in packets])
        return p.data, p.offsets, p.lengths, True
    raise ConfigError("must be a bpfjit.pcap.Packets, a (data, offsets, lengths) tuple of numpy arrays, a list "
                      f"of bytes-like packets or a 2-D uint8 array; got {type(packets).__name__}", "packets")


class PacketRun:
    """One run_packets call: packets laid out for the program type, the internal context, the results."""

    def __init__(self, prepared, packets, readonly: bool = False):
        ptype = self.ptype = prepared.ptype
        data, offsets, lengths, writable = as_input(packets)
        self.n = n = len(offsets)
        facts = getattr(prepared, "_packet_facts", None)
        if facts is None:                       # per program, not per call
            forms, insns = prepared.program.forms, prepared.program.insns
            facts = prepared._packet_facts = (
                moves_bounds(prepared.program), needs_headers(prepared.program, ptype),
                any(f is not None and (f.op in ("st", "stx") or f.op.startswith("lock_")) and insns[pc].dst != 10
                    for pc, f in enumerate(forms)))
        self.room: bool = facts[0]
        self.headers: bool = facts[1]
        self.reset: bool = facts[2]
        xdp = ptype.packet == "xdp"
        head = XDP_PACKET_HEADROOM if xdp and self.room else 0
        tail = (XDP_TAILROOM if xdp else SKB_TAILROOM) if self.room else 0
        if head or tail or (ptype.pkt_write and not readonly and not writable):
            sizes = head + lengths + tail
            starts = np.zeros(n, dtype=np.int64)
            if n > 1:
                np.cumsum(sizes[:-1], out=starts[1:])
            arena = np.zeros(int(sizes.sum()) if n else 0, dtype=np.uint8)
            for i in range(n):
                o, ln, s = int(offsets[i]), int(lengths[i]), int(starts[i]) + head
                arena[s:s + ln] = data[o:o + ln]
            data, offsets = arena, starts + head
        self.data, self.offsets, self.lengths = data, offsets, lengths
        self.headroom, self.tailroom = head, tail
        self.base = base = data.__array_interface__["data"][0] if data.size else 0
        self.pkt_perms = PERM_RW if ptype.pkt_write and not readonly else PERM_R
        self.nh = net_header_off(ptype)
        self.stores = stores(ptype, self.headers)
        self.uapi = uapi_size(ptype)
        self.hidden = dict(ptype.hidden)
        self.template = template(ptype)
        self.kctx = np.zeros(ptype.kctx_size, dtype=np.uint8)
        self.kctx[:self.uapi] = self.template
        self.ctx_perms = PERM_RW if any(f.write for f in ptype.fields) else PERM_R
        self.bounds_out = np.zeros((n, 3), dtype=np.uint64) if self.room else None     # data, data_end, meta
        self.redirects: dict[int, tuple] = {}
        self.region = None          # the engine's packet Region (Python's view)
        self.table = None           # the JIT's region table when the packet is its row 2
        args = self.args = np.zeros(len(ARGS), dtype=np.uint64)
        addr = (lambda a: a.__array_interface__["data"][0] if a is not None and a.size else 0)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        self.lengths = np.ascontiguousarray(self.lengths, dtype=np.int64)
        for name, v in (("base", base), ("headroom", head), ("tailroom", tail), ("offsets", addr(self.offsets)),
                        ("lengths", addr(self.lengths)), ("bounds", addr(self.bounds_out)),
                        ("template", addr(self.template) if self.reset else 0)):
            args[A[name]] = v

    # ---- one packet (the interpreter's side of what bpf_run_pkts does natively) ----
    def values(self, i: int) -> dict:
        """The context values of packet i before its run."""
        data = self.base + int(self.offsets[i])
        ln = int(self.lengths[i])
        v = {"data": data, "data_end": data + ln, "data_meta": data, "index": i, "head": data - self.headroom,
             "end": data + ln + self.tailroom, "len": ln, "protocol": 0, "pkt_type": 0}
        if self.headers:
            v["protocol"], v["pkt_type"] = header_values(self.buffer(data, data + min(ln, 14)).tobytes(), self.nh)
        return v

    def load(self, i: int) -> None:
        """Fill the internal context for packet i."""
        k = self.kctx
        if self.reset:
            k[:self.uapi] = self.template
        v = self.values(i)
        for name, off, size in self.stores:
            k[off:off + size] = np.frombuffer((v[name] & ((1 << 8 * size) - 1)).to_bytes(size, "little"), np.uint8)

    def finish(self, i: int) -> None:
        """After packet i's run: keep its final bounds (programs that may move them)."""
        if self.bounds_out is not None:
            data, end, meta, _, _ = self.bounds()
            self.bounds_out[i] = (data, end, meta)

    def _hidden(self, name: str) -> int:
        off = self.hidden[name]
        return int.from_bytes(self.kctx[off:off + 8].tobytes(), "little")

    def index(self) -> int:
        """Index of the packet being run."""
        return self._hidden("index")

    def bounds(self, i: int | None = None) -> tuple[int, int, int, int, int]:
        """(data, data_end, data_meta, head, end) of the packet being run, as helpers may have moved them."""
        h = self._hidden
        return h("data"), h("data_end"), h("data_meta"), h("head"), h("end")

    def buffer(self, lo: int, hi: int) -> np.ndarray:
        """The packet memory [lo, hi) (absolute addresses inside the run's packet buffer)."""
        return self.data[lo - self.base:hi - self.base]

    def set_bounds(self, i: int, data: int, data_end: int, meta: int) -> None:
        """Move the running packet's bounds (adjust_head/meta/tail, change_tail): context, packet region."""
        v = {"data": data, "data_end": data_end, "data_meta": meta, "len": data_end - data}
        k = self.kctx
        for name, off, size in self.stores:
            if name in v and not (name == "len" and off != self.stores_len_off()):
                k[off:off + size] = np.frombuffer((v[name] & ((1 << 8 * size) - 1)).to_bytes(size, "little"),
                                                  np.uint8)
        if self.region is not None:
            self.region.rebind(self.buffer(meta, data_end))
        if self.table is not None:
            self.table[6], self.table[7] = meta, data_end

    def stores_len_off(self) -> int:
        """Offset of skb->len (wire_len keeps the length the packet arrived with)."""
        return next((off for name, off, _ in self.stores if name == "len"), -1)

    # ---- after the run ----
    def result(self):
        """The packets as the program left them (pcap.Packets over the run's buffer: no copy)."""
        from .pcap import Packets
        if self.bounds_out is None:
            return Packets(self.data, self.offsets, self.lengths)
        b = self.bounds_out.astype(np.int64)
        return Packets(self.data, b[:, 0] - self.base, b[:, 1] - b[:, 0])

    def meta_lengths(self) -> np.ndarray:
        """Bytes of XDP metadata before each packet (xdp_adjust_meta)."""
        if self.bounds_out is None:
            return np.zeros(self.n, dtype=np.int64)
        return (self.bounds_out[:, 0] - self.bounds_out[:, 2]).astype(np.int64)
