"""pcap / pcapng reading (both byte orders, µs/ns, pcapng blocks and interfaces), pcap writing, the
Packets container, and PcapError with offsets on malformed files. Files are built with struct here."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from bpfjit import pcap
from bpfjit.errors import BPFError, PcapError

from . import pktdecode

FRAMES = [bytes([i]) * (60 + 7 * i) for i in range(10)]


def pcap_bytes(frames, order="<", nano=False, linktype=1, ts=None, orig=None):
    magic = pcap.PCAP_MAGIC_NS if nano else pcap.PCAP_MAGIC_US
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        s, frac = ts[i] if ts else (1000 + i, 10 * i)
        out.append(struct.pack(order + "IIII", s, frac, len(f), orig[i] if orig else len(f)) + f)
    return b"".join(out)


def test_fixture_pcap():
    p = pcap.read(pktdecode.DATA / "mixed.pcap")
    assert len(p) == 400 and p.linktype == 1
    i = np.arange(400)
    exp_ts = (1_700_000_000 + i // 10) * 10**9 + ((i % 10) * 100_000 + i) * 1000
    assert (p.timestamps == exp_ts).all()
    assert (p.orig_lengths >= p.lengths).all() and (p.orig_lengths > p.lengths).any()
    assert p.lengths.min() < 14 and p.lengths.max() <= 1514
    frames = list(p)
    assert frames[3] == p[3] == p.view(3).tobytes() and len(frames[3]) == p.lengths[3]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_read_pcap_byte_orders_and_resolution(tmp_path, order, nano):
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(FRAMES, order, nano, linktype=101))
    p = pcap.read(path)
    assert list(p) == FRAMES and p.linktype == 101
    unit = 1 if nano else 1000
    assert p.timestamps.tolist() == [(1000 + i) * 10**9 + 10 * i * unit for i in range(10)]


def test_fixed_size_records_take_the_vectorised_path(tmp_path, monkeypatch):
    frames = [bytes([i % 256]) * 64 for i in range(1000)]
    path = tmp_path / "fixed.pcap"
    path.write_bytes(pcap_bytes(frames, orig=[100] * 1000))

    def walk(*a):
        raise AssertionError("per-record walk used")
    monkeypatch.setattr(pcap, "_walk_records", walk)
    p = pcap.read(path)
    assert len(p) == 1000 and p[999] == frames[999] and (p.orig_lengths == 100).all()
    assert p.offsets[1] - p.offsets[0] == 80


def test_fixed_size_guess_falls_back(tmp_path):
    # same total size as fixed records but a record with a different length: the walk must be used
    frames = [b"a" * 10, b"b" * 30, b"c" * 20, b"d" * 20]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(frames))
    assert list(pcap.read(path)) == frames


def test_empty_pcap(tmp_path):
    path = tmp_path / "e.pcap"
    path.write_bytes(pcap_bytes([]))
    p = pcap.read(path)
    assert len(p) == 0 and list(p) == []


@pytest.mark.parametrize("nano", [False, True])
def test_write_read_roundtrip(tmp_path, nano):
    ts = np.array([1_600_000_000_123_456_789 + i * 1001 for i in range(10)], dtype=np.int64)
    src = pcap.Packets.from_list(FRAMES, timestamps=ts)
    path = tmp_path / "w.pcap"
    assert pcap.write(path, src, nanosecond=nano) == 10
    p = pcap.read(path)
    assert list(p) == FRAMES
    assert (p.timestamps == (ts if nano else ts // 1000 * 1000)).all()


def test_write_forms(tmp_path):
    path = tmp_path / "w.pcap"
    pcap.write(path, FRAMES, linktype=228)
    p = pcap.read(path)
    assert list(p) == FRAMES and p.linktype == 228
    pcap.write(path, (p.data, p.offsets, p.lengths, p.timestamps))
    q = pcap.read(path)
    assert list(q) == FRAMES and (q.timestamps == p.timestamps).all() and q.linktype == 1
    sub = p[2:5]
    pcap.write(path, sub)
    assert list(pcap.read(path)) == FRAMES[2:5]


def test_write_errors(tmp_path):
    with pytest.raises(PcapError, match="cannot write int"):
        pcap.write(tmp_path / "x.pcap", 42)
    with pytest.raises(PcapError, match="timestamps outside"):
        pcap.write(tmp_path / "x.pcap", pcap.Packets.from_list([b"x"], timestamps=[-5]))
    with pytest.raises(PcapError, match="cannot write"):
        pcap.write(tmp_path / "no" / "such" / "dir.pcap", FRAMES)


def test_packets_container():
    p = pcap.Packets.from_list(FRAMES)
    assert len(p) == 10 and p[-1] == FRAMES[-1]
    sl = p[::2]
    assert list(sl) == FRAMES[::2] and np.shares_memory(sl.data, p.data)
    sel = p[np.array([1, 3])]
    assert list(sel) == [FRAMES[1], FRAMES[3]]
    rec = p.padded(64)
    assert rec.shape == (10, 64) and rec[0].tobytes() == FRAMES[0][:60] + bytes(4)
    assert rec[9].tobytes() == FRAMES[9][:64]
    assert "n=10" in repr(p)
    with pytest.raises(PcapError, match="outside the data buffer"):
        pcap.Packets(np.zeros(4, np.uint8), [0], [5])
    with pytest.raises(PcapError, match="offsets but"):
        pcap.Packets(np.zeros(4, np.uint8), [0, 1], [1])


# ---------------------------------------------------------------- pcapng
def block(order, btype, body):
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order):
    return block(order, pcap.NG_SHB, struct.pack(order + "IHHq", pcap.NG_BOM, 1, 0, -1))


def idb(order, linktype, snaplen=0, tsresol=None, tsoffset=None):
    opts = b""
    if tsresol is not None:
        opts += struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + bytes(3)
    if tsoffset is not None:
        opts += struct.pack(order + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(order, pcap.NG_IDB, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order, iface, ts, data, orig=None):
    return block(order, pcap.NG_EPB, struct.pack(order + "5I", iface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                                  orig or len(data)) + data)


def spb(order, data, orig=None):
    return block(order, pcap.NG_SPB, struct.pack(order + "I", orig or len(data)) + data)


def pb(order, iface, ts, data):
    return block(order, pcap.NG_PB, struct.pack(order + "HH4I", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                                 len(data)) + data)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng(tmp_path, order):
    img = (shb(order) + idb(order, 1) + idb(order, 101, tsresol=9, tsoffset=5) +
           epb(order, 0, 1_500_000_000_000_001, b"A" * 61) +
           block(order, 4, b"\0" * 8) +                                 # name resolution: skipped
           epb(order, 1, 7, b"B" * 3) + spb(order, b"C" * 70) + pb(order, 1, 9, b"D" * 5))
    path = tmp_path / "x.pcapng"
    path.write_bytes(img)
    p = pcap.read(path)
    assert list(p) == [b"A" * 61, b"B" * 3, b"C" * 70, b"D" * 5]
    assert p.interfaces.tolist() == [0, 1, 0, 1] and p.linktypes == [1, 101] and p.linktype == 1
    assert p.timestamps.tolist() == [1_500_000_000_000_001_000, 5 * 10**9 + 7, 0, 5 * 10**9 + 9]


def test_pcapng_sections_and_binary_resolution(tmp_path):
    img = (shb("<") + idb("<", 1, tsresol=0x80 | 10) + epb("<", 0, 2048, b"x" * 4) +
           shb(">") + idb(">", 228, snaplen=10) + epb(">", 0, 3, b"y" * 4) + spb(">", b"z" * 10, orig=100))
    path = tmp_path / "x.pcapng"
    path.write_bytes(img)
    p = pcap.read(path)
    assert list(p) == [b"xxxx", b"yyyy", b"z" * 10]
    assert p.interfaces.tolist() == [0, 1, 1] and p.linktypes == [1, 228]
    assert p.timestamps.tolist()[:2] == [2 * 10**9, 3000] and p.orig_lengths.tolist() == [4, 4, 100]


def test_pcapng_snaplen_limits_simple_packets(tmp_path):
    img = shb("<") + idb("<", 1, snaplen=8) + spb("<", b"q" * 12, orig=12)
    path = tmp_path / "x.pcapng"
    path.write_bytes(img)
    p = pcap.read(path)
    assert list(p) == [b"q" * 8] and p.orig_lengths.tolist() == [12]


# ---------------------------------------------------------------- malformed input
GOOD = pcap_bytes(FRAMES[:2])


@pytest.mark.parametrize("img,offset,match", [
    (b"", 0, "too short"),
    (b"\0\0\0\0" * 8, 0, "not a pcap or pcapng file"),
    (GOOD[:20], 0, "truncated pcap file header"),
    (GOOD[:24 + 10], 24, "truncated record header"),
    (GOOD[:24 + 16 + 5], 24, "truncated record"),
    (GOOD[:4] + struct.pack("<H", 3) + GOOD[6:], 4, "unsupported pcap version"),
    (GOOD[:24] + struct.pack("<IIII", 0, 0, 1 << 30, 0), 32, "implausible"),
    (shb("<")[:10], 0, "truncated block header"),
    (shb("<")[:8] + b"\0\0\0\0" + shb("<")[12:], 8, "bad byte-order magic"),
    (shb("<") + struct.pack("<II", 1, 13) + bytes(8), 28 + 4, "bad block length"),
    (shb("<") + struct.pack("<II", 1, 32) + bytes(8), 28, "truncated block"),
    (shb("<") + idb("<", 1)[:-4] + b"\1\0\0\0", 28 + 16, "trailing length"),
    (shb("<") + epb("<", 0, 0, b"abc"), 28, "interface 0, which is not described"),
    (shb("<") + idb("<", 1) + block("<", 6, struct.pack("<5I", 0, 0, 0, 50, 50)), 48, "overruns"),
    (shb("<") + idb("<", 1) + block("<", 6, b"\0" * 8), 48, "too short"),
    (shb("<") + idb("<", 1) + block("<", 3, b""), 48, "simple packet block too short"),
    (shb("<") + block("<", 1, b"\0" * 4), 28, "interface description block too short"),
    (shb("<") + block("<", 1, struct.pack("<HHIHH", 1, 0, 0, 9, 40)), 44, "option overruns"),
])
def test_malformed(tmp_path, img, offset, match):
    path = tmp_path / "bad"
    path.write_bytes(img)
    with pytest.raises(PcapError, match=match) as e:
        pcap.read(path)
    assert e.value.offset == offset and str(path) in str(e.value) and isinstance(e.value, BPFError)


def test_non_strict_stops_at_truncated_record(tmp_path):
    path = tmp_path / "t.pcap"
    path.write_bytes(GOOD[:-3])
    assert list(pcap.read(path, strict=False)) == FRAMES[:1]
    ng = shb("<") + idb("<", 1) + epb("<", 0, 0, b"abcd")
    path.write_bytes(ng + ng[28:40])
    assert list(pcap.read(path, strict=False)) == [b"abcd"]


def test_missing_file(tmp_path):
    with pytest.raises(PcapError, match="cannot read"):
        pcap.read(tmp_path / "nope.pcap")


def test_parse_from_bytes():
    assert list(pcap.parse(GOOD)) == FRAMES[:2]


@pytest.mark.parametrize("order", ["<", ">"])
def test_native_walk_in_chunks(tmp_path, monkeypatch, order):
    monkeypatch.setattr(pcap, "CHUNK", 7)
    frames = [bytes([i % 256]) * (1 + (i * 37) % 200) for i in range(50)]
    path = tmp_path / "v.pcap"
    img = pcap_bytes(frames, order)
    path.write_bytes(img)
    p = pcap.read(path)
    assert list(p) == frames and p.timestamps[49] == (1000 + 49) * 10**9 + 490 * 1000
    path.write_bytes(img[:-5])                       # truncated last record, found after several chunks
    with pytest.raises(PcapError, match="truncated record") as e:
        pcap.read(path)
    assert e.value.offset == len(img) - 16 - len(frames[-1])
    assert list(pcap.read(path, strict=False)) == frames[:-1]


def test_mutated_files_raise_only_pcap_errors():
    """Random byte and length mutations of valid pcap/pcapng images: parse or PcapError, nothing else."""
    import random
    rng = random.Random(3)
    ng = (shb("<") + idb("<", 1, tsresol=9, tsoffset=1) + epb("<", 0, 5, b"A" * 20) + spb("<", b"B" * 9) +
          pb("<", 0, 1, b"C" * 3) + shb(">") + idb(">", 1) + epb(">", 0, 7, b"D" * 5))
    images = [pcap_bytes(FRAMES[:4]), pcap_bytes(FRAMES[:3], ">", nano=True), ng]
    for _ in range(3000):
        img = bytearray(rng.choice(images))
        for _ in range(rng.randint(1, 4)):
            what = rng.random() if len(img) > 1 else 0.9
            if what < 0.6:
                img[rng.randrange(len(img))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
            elif what < 0.8:
                del img[rng.randrange(len(img)):]
            else:
                img += bytes(rng.randrange(256) for _ in range(rng.randint(1, 24)))
        for strict in (True, False):
            try:
                p = pcap.parse(bytes(img), strict=strict)
            except PcapError:
                continue
            assert len(p) == len(p.lengths) and all(len(x) == n for x, n in zip(p, p.lengths.tolist()))


def test_example_pcap_filter(tmp_path, capsys):
    import runpy
    ex = runpy.run_path(str(pktdecode.DATA.parents[2] / "examples" / "pcap_filter.py"))
    out = tmp_path / "o.pcap"
    rc = ex["main"]([str(pktdecode.DATA / "mixed.pcap"), str(pktdecode.DATA / "filters" / "udp_port53.ddd"),
                     "-o", str(out)])
    frames = list(pcap.read(out))
    assert rc == 0 and len(frames) == 10 and all(pktdecode.matches("udp_port53", f) for f in frames)
    assert "10 of 400 packets match" in capsys.readouterr().out
    assert ex["main"]([str(tmp_path / "missing.pcap")]) == 1
