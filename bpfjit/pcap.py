"""pcap and pcapng files as numpy packet batches: `read(path) -> Packets`, `write(path, packets)`.

`Packets` holds every packet in one uint8 buffer: `.data`, `.offsets` / `.lengths` (int64, captured
bytes), `.orig_lengths` (wire length), `.timestamps` (int64 ns since the epoch), `.linktype`, and for
pcapng `.interfaces` (interface index per packet) and `.linktypes` (per interface). `len()`, iteration and
indexing give each packet's bytes (a slice gives a `Packets`). This is the form `VM.run_packets` takes.

Reading: classic pcap in both byte orders with microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d)
magic; pcapng sections (either byte order) with SHB, IDB (if_tsresol, if_tsoffset), EPB, SPB and the
obsolete PB, several interfaces and sections; other blocks are skipped. `.data` is the file itself
(read once with numpy), offsets point into it: no per-packet copy. For pcap whose records all have the
same captured length the header walk is vectorised (one strided numpy view, no per-packet Python);
otherwise the walk needs each header to find the next one: a small native loop (pcapwalk.py, llvmlite)
copies the record headers out, then numpy decodes them. A library such as dpkt or scapy would build a
Python object per packet, which is what this module avoids.
Malformed input raises `PcapError` with the byte offset.

Writing: classic little-endian pcap (nanosecond magic by default).
Nothing here filters or runs programs.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from .errors import PcapError

LINKTYPE_ETHERNET = 1
PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
NG_SHB, NG_IDB, NG_PB, NG_SPB, NG_EPB = 0x0A0D0D0A, 1, 2, 3, 6
NG_BOM = 0x1A2B3C4D
MAX_CAPLEN = 1 << 28          # larger captured lengths are taken as corruption
_NS = 1_000_000_000


class Packets:
    """Many packets in one buffer (see the module docstring)."""

    def __init__(self, data, offsets, lengths, timestamps=None, linktype: int = LINKTYPE_ETHERNET,
                 orig_lengths=None, interfaces=None, linktypes=None):
        self.data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
        n = len(self.offsets)
        if len(self.lengths) != n:
            raise PcapError(f"{n} offsets but {len(self.lengths)} lengths")
        if n and (self.offsets.min() < 0 or self.lengths.min() < 0
                  or (self.offsets + self.lengths).max() > len(self.data)):
            raise PcapError("packet offsets/lengths reach outside the data buffer")
        self.timestamps = (np.zeros(n, np.int64) if timestamps is None
                           else np.ascontiguousarray(timestamps, dtype=np.int64).reshape(-1))
        self.orig_lengths = (self.lengths.copy() if orig_lengths is None
                             else np.ascontiguousarray(orig_lengths, dtype=np.int64).reshape(-1))
        if len(self.timestamps) != n or len(self.orig_lengths) != n:
            raise PcapError("timestamps/orig_lengths must have one entry per packet")
        self.linktype = int(linktype)
        self.interfaces = interfaces
        self.linktypes = list(linktypes) if linktypes is not None else [self.linktype]

    @classmethod
    def from_list(cls, frames, timestamps=None, linktype: int = LINKTYPE_ETHERNET) -> "Packets":
        """Packets from a list of bytes-like frames (copied into one buffer, back to back)."""
        frames = [bytes(f) for f in frames]
        lengths = np.array([len(f) for f in frames], dtype=np.int64)
        offsets = np.zeros(len(frames), dtype=np.int64)
        if len(frames) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        data = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
        return cls(data, offsets, lengths, timestamps, linktype)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice) or isinstance(i, np.ndarray):
            idx = np.arange(len(self))[i]
            return Packets(self.data, self.offsets[idx], self.lengths[idx], self.timestamps[idx], self.linktype,
                           self.orig_lengths[idx],
                           None if self.interfaces is None else self.interfaces[idx], self.linktypes)
        o = int(self.offsets[i])
        return self.data[o:o + int(self.lengths[i])].tobytes()

    def __iter__(self):
        mv = memoryview(self.data)
        for o, n in zip(self.offsets.tolist(), self.lengths.tolist()):
            yield bytes(mv[o:o + n])

    def view(self, i: int) -> np.ndarray:
        """Packet i as a numpy view into `.data` (no copy)."""
        o = int(self.offsets[i])
        return self.data[o:o + int(self.lengths[i])]

    def padded(self, size: int) -> np.ndarray:
        """(len, size) uint8 records: each packet truncated or zero-padded to `size` bytes (for run_batch)."""
        n = len(self)
        out = np.zeros((n, size), dtype=np.uint8)
        if n == 0:
            return out
        take = np.minimum(self.lengths, size)
        cols = np.arange(size)
        mask = cols[None, :] < take[:, None]
        src = self.offsets[:, None] + cols[None, :]
        out[mask] = self.data[src[mask]]
        return out

    def __repr__(self) -> str:
        return f"<Packets n={len(self)} bytes={int(self.lengths.sum())} linktype={self.linktype}>"


# ---------------------------------------------------------------- reading
def read(path, *, strict: bool = True) -> Packets:
    """Read a pcap or pcapng file. strict=False stops at a truncated last record instead of raising."""
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise PcapError(f"cannot read: {e.strerror or e}", path=path) from None
    return parse(data, strict=strict, path=path)


def parse(data, *, strict: bool = True, path: str | None = None) -> Packets:
    """Packets of a pcap/pcapng image held in memory (bytes or a uint8 numpy array)."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else \
        np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if len(buf) < 4:
        raise PcapError(f"file too short for a pcap header ({len(buf)} bytes)", 0, path)
    magic_le = int.from_bytes(buf[:4].tobytes(), "little")
    if magic_le == NG_SHB:
        return _PcapNg(buf, strict, path).read()
    for order in ("<", ">"):
        magic = int.from_bytes(buf[:4].tobytes(), "little" if order == "<" else "big")
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return _read_pcap(buf, order, magic == PCAP_MAGIC_NS, strict, path)
    raise PcapError(f"not a pcap or pcapng file (magic {buf[:4].tobytes().hex()})", 0, path)


def _read_pcap(buf, order: str, nano: bool, strict: bool, path) -> Packets:
    if len(buf) < 24:
        raise PcapError(f"truncated pcap file header ({len(buf)} of 24 bytes)", 0, path)
    _, major, minor, _, _, snaplen, network = struct.unpack(order + "IHHiIII", buf[:24].tobytes())
    if major != 2:
        raise PcapError(f"unsupported pcap version {major}.{minor}", 4, path)
    linktype = network & 0x03FFFFFF
    recs = _fixed_records(buf, order) if len(buf) > 24 else None
    if recs is None:
        recs = _walk_records(buf, order, strict, path)
    sec, frac, incl, orig, offsets = recs
    ts = sec * _NS + (frac if nano else frac * 1000)
    return Packets(buf, offsets, incl, ts, linktype, orig)


def _fixed_records(buf, order):
    """Vectorised header walk when every record has the first record's captured length, else None."""
    if len(buf) < 40:
        return None
    caplen = int.from_bytes(buf[32:36].tobytes(), "little" if order == "<" else "big")
    stride = 16 + caplen
    body = len(buf) - 24
    if caplen > MAX_CAPLEN or body % stride:
        return None
    n = body // stride
    hdr = np.lib.stride_tricks.as_strided(buf[24:], shape=(n, 16), strides=(stride, 1))
    words = np.ascontiguousarray(hdr).view(np.dtype(order + "u4")).reshape(n, 4).astype(np.int64)
    if not (words[:, 2] == caplen).all():
        return None
    offsets = 24 + 16 + np.arange(n, dtype=np.int64) * stride
    return words[:, 0], words[:, 1], words[:, 2], words[:, 3], offsets


CHUNK = 1 << 18                 # records per call of the native walk


def _walk_records(buf, order, strict, path):
    """Sequential header walk (native, pcapwalk.py); errors are reported by the Python walk."""
    from . import pcapwalk
    swap = (order == ">") != (np.little_endian is False)
    parts_off, parts_hdr = [], []
    pos = 24
    while True:
        offs = np.empty(CHUNK, dtype=np.int64)
        hdrs = np.empty((CHUNK, 16), dtype=np.uint8)
        n, pos, status = pcapwalk.walk(buf, pos, swap, offs, hdrs)
        parts_off.append(offs[:n])
        parts_hdr.append(hdrs[:n])
        if status or n < CHUNK:
            break
    offs = np.concatenate(parts_off)
    words = np.concatenate(parts_hdr).view(np.dtype(order + "u4")).reshape(-1, 4).astype(np.int64)
    recs = [words[:, 0], words[:, 1], words[:, 2], words[:, 3], offs + 16]
    if status:                                       # the Python walk raises (or, not strict, stops)
        rest = _walk_records_py(buf, order, strict, path, pos)
        recs = [np.concatenate([a, b]) for a, b in zip(recs, rest)]
    return tuple(recs)


def _walk_records_py(buf, order, strict, path, pos=24):
    raw = memoryview(buf)
    n_bytes = len(buf)
    hdr = struct.Struct(order + "IIII")
    sec, frac, incl, orig, offs = [], [], [], [], []
    while pos < n_bytes:
        if pos + 16 > n_bytes:
            if not strict:
                break
            raise PcapError(f"truncated record header ({n_bytes - pos} of 16 bytes)", pos, path)
        s, f, c, o = hdr.unpack_from(raw, pos)
        if c > MAX_CAPLEN:
            raise PcapError(f"record captured length {c} is implausible (corrupt file?)", pos + 8, path)
        if pos + 16 + c > n_bytes:
            if not strict:
                break
            raise PcapError(f"truncated record: {c} bytes captured, {n_bytes - pos - 16} present", pos, path)
        sec.append(s), frac.append(f), incl.append(c), orig.append(o), offs.append(pos + 16)
        pos += 16 + c
    a = [np.array(x, dtype=np.int64) for x in (sec, frac, incl, orig, offs)]
    return tuple(a)


class _PcapNg:
    def __init__(self, buf, strict, path):
        self.buf, self.raw, self.strict, self.path = buf, memoryview(buf), strict, path
        self.order = "<"
        self.ifaces: list[tuple[int, int, int, int]] = []     # (linktype, snaplen, resol (num, den), offset)
        self.section_base = 0                                  # index of this section's first interface

    def err(self, msg, off):
        return PcapError(msg, off, self.path)

    def u32(self, off):
        return struct.unpack_from(self.order + "I", self.raw, off)[0]

    def read(self) -> Packets:
        n = len(self.buf)
        offs, lens, origs, ts, ifs = [], [], [], [], []
        pos = 0
        while pos < n:
            if pos + 12 > n:
                if not self.strict:
                    break
                raise self.err(f"truncated block header ({n - pos} bytes)", pos)
            if self.raw[pos:pos + 4] == b"\n\r\r\n":         # SHB: the same in both byte orders
                self._section(pos)
            btype = self.u32(pos)
            blen = self.u32(pos + 4)
            if blen < 12 or blen % 4:
                raise self.err(f"bad block length {blen}", pos + 4)
            if pos + blen > n:
                if not self.strict:
                    break
                raise self.err(f"truncated block: length {blen}, {n - pos} bytes left", pos)
            if self.u32(pos + blen - 4) != blen:
                raise self.err("block trailing length does not match its header", pos + blen - 4)
            body, end = pos + 8, pos + blen - 4
            if btype == NG_IDB:
                self._interface(body, end)
            elif btype in (NG_EPB, NG_PB):
                if btype == NG_EPB:
                    if end - body < 20:
                        raise self.err("enhanced packet block too short", pos)
                    iface, hi, lo, cap, orig = struct.unpack_from(self.order + "5I", self.raw, body)
                else:
                    if end - body < 20:
                        raise self.err("packet block too short", pos)
                    iface, _, hi, lo, cap, orig = struct.unpack_from(self.order + "HH4I", self.raw, body)
                data = body + 20
                if data + cap > end:
                    raise self.err(f"packet data ({cap} bytes) overruns its block", pos)
                gi = self._iface_index(iface, pos)
                offs.append(data)
                lens.append(cap)
                origs.append(orig)
                ifs.append(gi)
                ts.append(self._ns(gi, (hi << 32) | lo, pos))
            elif btype == NG_SPB:
                if end - body < 4:
                    raise self.err("simple packet block too short", pos)
                orig = self.u32(body)
                gi = self._iface_index(0, pos)
                snap = self.ifaces[gi][1] or orig
                cap = min(orig, snap, end - body - 4)
                offs.append(body + 4)
                lens.append(cap)
                origs.append(orig)
                ifs.append(gi)
                ts.append(0)
            pos += blen
        linktypes = [i[0] for i in self.ifaces]
        return Packets(self.buf, offs, lens, np.array(ts, dtype=np.int64), linktypes[0] if linktypes else
                       LINKTYPE_ETHERNET, origs, np.array(ifs, dtype=np.int32), linktypes or None)

    def _section(self, pos):
        if pos + 16 > len(self.buf):
            raise self.err("truncated section header block", pos)
        bom = self.raw[pos + 8:pos + 12].tobytes()
        if bom == NG_BOM.to_bytes(4, "little"):
            self.order = "<"
        elif bom == NG_BOM.to_bytes(4, "big"):
            self.order = ">"
        else:
            raise self.err(f"bad byte-order magic {bom.hex()} in section header", pos + 8)
        major = struct.unpack_from(self.order + "H", self.raw, pos + 12)[0]
        if major != 1:
            raise self.err(f"unsupported pcapng version {major}", pos + 12)
        self.section_base = len(self.ifaces)

    def _interface(self, body, end):
        if end - body < 8:
            raise self.err("interface description block too short", body - 8)
        linktype, _, snaplen = struct.unpack_from(self.order + "HHI", self.raw, body)
        resol, offset = (1, 1_000_000), 0
        pos = body + 8
        while pos + 4 <= end:                       # options
            code, olen = struct.unpack_from(self.order + "HH", self.raw, pos)
            if code == 0:
                break
            val = pos + 4
            if val + olen > end:
                raise self.err("interface option overruns its block", pos)
            if code == 9 and olen >= 1:             # if_tsresol
                v = self.raw[val]
                resol = (1, 1 << (v & 0x7F)) if v & 0x80 else (1, 10 ** v)
            elif code == 14 and olen >= 8:          # if_tsoffset (seconds)
                offset = struct.unpack_from(self.order + "q", self.raw, val)[0]
            pos = val + ((olen + 3) & ~3)
        self.ifaces.append((linktype, snaplen, resol, offset))

    def _iface_index(self, iface, pos):
        gi = self.section_base + iface
        if gi >= len(self.ifaces):
            raise self.err(f"packet refers to interface {iface}, which is not described", pos)
        return gi

    def _ns(self, gi, units, pos):
        _, _, (num, den), offset = self.ifaces[gi]
        ns = units * num * _NS // den + offset * _NS
        if not -(1 << 63) <= ns < 1 << 63:
            raise self.err("timestamp out of range of int64 nanoseconds", pos)
        return ns


# ---------------------------------------------------------------- writing
def write(path, packets, *, linktype: int | None = None, nanosecond: bool = True, snaplen: int = 262144) -> int:
    """Write packets as a classic little-endian pcap file; returns the number of packets written.

    packets: a `Packets`, a (data, offsets, lengths[, timestamps]) tuple or a list of bytes-like frames.
    linktype defaults to the Packets' own (1, Ethernet, otherwise)."""
    if not isinstance(packets, Packets):
        if isinstance(packets, tuple) and len(packets) in (3, 4):
            packets = Packets(*packets)
        elif isinstance(packets, (list, tuple)):
            packets = Packets.from_list(packets)
        else:
            raise PcapError(f"cannot write {type(packets).__name__}: give Packets, (data, offsets, lengths"
                            f"[, timestamps]) or a list of frames", path=os.fspath(path))
    lt = packets.linktype if linktype is None else linktype
    n = len(packets)
    ts = packets.timestamps
    sec, ns = np.divmod(ts, _NS)
    frac = ns if nanosecond else ns // 1000
    if n and (sec.min() < 0 or sec.max() > 0xFFFFFFFF):
        raise PcapError("timestamps outside the range of pcap (0 .. 2^32 s)", path=os.fspath(path))
    hdrs = np.empty((n, 4), dtype="<u4")
    hdrs[:, 0], hdrs[:, 1], hdrs[:, 2] = sec, frac, packets.lengths
    hdrs[:, 3] = np.maximum(packets.orig_lengths, packets.lengths)
    head = struct.pack("<IHHiIII", PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, lt)
    out = np.empty(24 + 16 * n + int(packets.lengths.sum()), dtype=np.uint8)
    out[:24] = np.frombuffer(head, np.uint8)
    rec_off = 24 + 16 * np.arange(n, dtype=np.int64)
    if n > 1:
        rec_off[1:] += np.cumsum(packets.lengths[:-1])
    hv = hdrs.view(np.uint8).reshape(n, 16)
    out[(rec_off[:, None] + np.arange(16)[None, :]).reshape(-1)] = hv.reshape(-1)
    src, dst = packets.data.data, out.data
    for d, o, ln in zip((rec_off + 16).tolist(), packets.offsets.tolist(), packets.lengths.tolist()):
        dst[d:d + ln] = src[o:o + ln]
    try:
        out.tofile(os.fspath(path))
    except OSError as e:
        raise PcapError(f"cannot write: {e.strerror or e}", path=os.fspath(path)) from None
    return n
