"""Packet runs (`VM.run_packets`): the input forms, the per-packet descriptors and contexts, for both engines.

A packet program (progtypes.PACKET_TYPES) runs once per packet. The input is many packets in one buffer:
a `bpfjit.pcap.Packets` (what `bpfjit.pcap.read` returns), a `(data, offsets, lengths)` tuple, a list of
bytes-like frames, or a 2-D uint8 array (one packet per row). `PacketRun` lays the packets out for the run:
in place in the caller's buffer when no packet may move or grow (numpy arrays and bytearrays are used in
place: stores into packets are visible there), else copied into one arena with XDP_PACKET_HEADROOM bytes
before and a tailroom after each packet so that xdp_adjust_head/meta/tail and skb_change_tail can move the
packet bounds. Each packet has one row of `desc` (uint64): its bounds (data, data_end, data_meta, head,
end), its index and the context values that depend on the packet (len, protocol, pkt_type). Before each run
an engine copies the row into the internal context (`STORES`: hidden u64 fields and UAPI fields) and points
the packet region at [data_meta, data_end): every packet access is checked against that region in checked
mode (reads past data_end fault), LD_ABS/LD_IND read [data, data_end).
Helpers that move the bounds call `PacketRun.set_bounds`, which updates the descriptor row (the result),
the context and the engine's packet region. After the run `PacketRun.result()` is the packets as the
program left them (a pcap.Packets over the same memory), `redirects` records where packets were sent.
Nothing here executes instructions.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .memory import PERM_R, PERM_RW
from .progtypes import (NET_HEADER_OFF, SKB_TAILROOM, XDP_PACKET_HEADROOM, XDP_TAILROOM)

# descriptor columns (uint64 each)
D_DATA, D_END, D_META, D_HEAD, D_LIMIT, D_INDEX, D_LEN, D_PROTO, D_PKTTYPE = range(9)
NCOLS = 9
IFINDEX = 1                 # ifindex / ingress_ifindex of every packet (one interface)
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST = 0, 1, 2
ROOM_HELPERS = ("xdp_adjust_head", "xdp_adjust_meta", "xdp_adjust_tail", "skb_change_tail")
NET_HEADER = {"cgroup_skb": 0}      # where the network header starts in a packet (others: Ethernet frames)


ROOM_HELPER_IDS = frozenset({38, 44, 54, 65})     # their ids (the helper registry's)


def moves_bounds(program) -> bool:
    """May a helper call of `program` move a packet's bounds (the run then leaves head/tailroom)?"""
    for pc, f in enumerate(program.forms):
        if f is not None and (f.op == "callx" or f.op == "call" and program.insns[pc].imm in ROOM_HELPER_IDS):
            return True
    return False


def net_header_off(ptype) -> int:
    return NET_HEADER.get(ptype.name, NET_HEADER_OFF)


def stores(ptype) -> tuple:
    """(descriptor column, context offset, size) of what each run copies into the internal context."""
    hid = dict(ptype.hidden)
    out = [(D_DATA, hid["data"], 8), (D_END, hid["data_end"], 8), (D_META, hid["data_meta"], 8),
           (D_INDEX, hid["index"], 8), (D_HEAD, hid["head"], 8), (D_LIMIT, hid["end"], 8)]
    col = {"pkt": D_DATA, "pkt_end": D_END, "pkt_meta": D_META}
    for f in ptype.fields:               # the 32-bit UAPI copies (low 32 bits: see ctxrewrite.py)
        if f.kind in col:
            out.append((col[f.kind], f.off, 4))
    if ptype.packet == "skb":
        names = {f.name: f.off for f in ptype.fields}
        out += [(D_LEN, names["len"], 4), (D_LEN, names["wire_len"], 4), (D_PROTO, names["protocol"], 4),
                (D_PKTTYPE, names["pkt_type"], 4)]
    return tuple(out)


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


def _gather(data: np.ndarray, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, data[np.where(ok, pos, 0)] if data.size else 0, 0).astype(np.uint64)


class PacketRun:
    """One run_packets call: packets laid out for the program type, descriptors, the internal context."""

    def __init__(self, prepared, packets, readonly: bool = False):
        ptype = self.ptype = prepared.ptype
        data, offsets, lengths, writable = as_input(packets)
        self.n = n = len(offsets)
        self.room = moves_bounds(prepared.program)
        xdp = ptype.packet == "xdp"
        head = XDP_PACKET_HEADROOM if xdp else 0
        tail = (XDP_TAILROOM if xdp else SKB_TAILROOM) if self.room else 0
        if xdp and not self.room:
            head = 0
        may_write = ptype.pkt_write and not readonly
        if head or tail or (may_write and not writable):
            sizes = head + lengths + tail
            starts = np.zeros(n, dtype=np.int64)
            if n > 1:
                np.cumsum(sizes[:-1], out=starts[1:])
            arena = np.zeros(int(sizes.sum()) if n else 0, dtype=np.uint8)
            for i in range(n):
                o, ln, s = int(offsets[i]), int(lengths[i]), int(starts[i]) + head
                arena[s:s + ln] = data[o:o + ln]
            self.data, self.offsets = arena, starts + head
            limits = starts + sizes
        else:
            self.data, self.offsets = data, offsets
            limits = offsets + lengths
            head = 0
        self.lengths = lengths
        self.base = base = self.data.__array_interface__["data"][0] if self.data.size else 0
        self.pkt_perms = PERM_RW if ptype.pkt_write and not readonly else PERM_R
        desc = self.desc = np.zeros((n, NCOLS), dtype=np.uint64)
        start = base + self.offsets.astype(np.uint64)
        desc[:, D_DATA] = start
        desc[:, D_META] = start
        desc[:, D_END] = start + lengths.astype(np.uint64)
        desc[:, D_HEAD] = start - np.uint64(head)
        desc[:, D_LIMIT] = base + limits.astype(np.uint64)
        desc[:, D_INDEX] = np.arange(n, dtype=np.uint64)
        desc[:, D_LEN] = lengths.astype(np.uint64)
        self.nh = net_header_off(ptype)
        if ptype.packet == "skb":
            self._skb_columns()
        self.stores = stores(ptype)
        self.uapi = uapi_size(ptype)
        self.template = template(ptype)
        self.kctx = np.zeros(ptype.kctx_size, dtype=np.uint8)
        self.kctx[:self.uapi] = self.template
        self.ctx_perms = PERM_RW if any(f.write for f in ptype.fields) else PERM_R
        forms, insns = prepared.program.forms, prepared.program.insns
        self.reset = any(f is not None and (f.op in ("st", "stx") or f.op.startswith("lock_")) and
                         insns[pc].dst != 10 for pc, f in enumerate(forms))
        self.redirects: dict[int, tuple] = {}
        self.region = None          # the interpreter's packet Region
        self.table = None           # the JIT's region table (row 2 = the packet)
        self.state = None           # the JIT's state block (MEM_START / MEM_LEN)

    def _skb_columns(self) -> None:
        data, off, ln, desc = self.data, self.offsets, self.lengths, self.desc
        if self.nh == 0:                       # cgroup_skb: an IP packet; protocol from the version nibble
            ver = _gather(data, off, ln >= 1) >> np.uint64(4)
            desc[:, D_PROTO] = np.where(ver == 4, 0x0008, np.where(ver == 6, 0xDD86, 0)).astype(np.uint64)
            return
        eth = ln >= 14
        desc[:, D_PROTO] = _gather(data, off + 12, eth) | (_gather(data, off + 13, eth) << np.uint64(8))
        mac = ln >= 6
        first = _gather(data, off, mac)
        bcast = mac.copy()
        for k in range(6):
            bcast &= _gather(data, off + k, mac) == 0xFF
        desc[:, D_PKTTYPE] = np.where(bcast, PACKET_BROADCAST,
                                      np.where(first & np.uint64(1), PACKET_MULTICAST, PACKET_HOST)).astype(np.uint64)

    # ---- one packet ----
    def load(self, i: int) -> None:
        """Fill the internal context for packet i (what the JIT's native loop does, for the interpreter)."""
        k, row = self.kctx, self.desc[i]
        if self.reset:
            k[:self.uapi] = self.template
        for col, off, size in self.stores:
            k[off:off + size] = np.frombuffer(int(row[col] & ((1 << 8 * size) - 1)).to_bytes(size, "little"),
                                              np.uint8)

    def bounds(self, i: int) -> tuple[int, int, int, int, int]:
        """(data, data_end, data_meta, head, end) of packet i now."""
        r = self.desc[i]
        return int(r[D_DATA]), int(r[D_END]), int(r[D_META]), int(r[D_HEAD]), int(r[D_LIMIT])

    def buffer(self, lo: int, hi: int) -> np.ndarray:
        """The packet memory [lo, hi) (absolute addresses inside the run's packet buffer)."""
        return self.data[lo - self.base:hi - self.base]

    def set_bounds(self, i: int, data: int, data_end: int, meta: int) -> None:
        """Move packet i's bounds (adjust_head/meta/tail, change_tail): descriptor, context, packet region."""
        r = self.desc[i]
        r[D_DATA], r[D_END], r[D_META], r[D_LEN] = data, data_end, meta, data_end - data
        for col, off, size in self.stores:
            if col in (D_DATA, D_END, D_META, D_LEN):
                self.kctx[off:off + size] = np.frombuffer(
                    int(r[col] & ((1 << 8 * size) - 1)).to_bytes(size, "little"), np.uint8)
        if self.region is not None:
            self.region.rebind(self.buffer(meta, data_end))
        if self.table is not None:
            self.table[6], self.table[7] = meta, data_end
        if self.state is not None:
            from .jit import state as S
            self.state[S.MEM_START], self.state[S.MEM_LEN] = data, data_end - data

    # ---- after the run ----
    def result(self):
        """The packets as the program left them (pcap.Packets over the run's buffer: no copy)."""
        from .pcap import Packets
        d = self.desc
        return Packets(self.data, (d[:, D_DATA] - np.uint64(self.base)).astype(np.int64) if self.n else [],
                       (d[:, D_END] - d[:, D_DATA]).astype(np.int64) if self.n else [])

    def meta_lengths(self) -> np.ndarray:
        """Bytes of XDP metadata before each packet (xdp_adjust_meta)."""
        return (self.desc[:, D_DATA] - self.desc[:, D_META]).astype(np.int64)
