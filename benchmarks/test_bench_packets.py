"""Packet filtering: the tcpdump filter `ip and tcp and dst port 80` (classic BPF from the committed
`tcpdump -ddd` fixture, converted by bpfjit.cbpf) over ~1M packets (group `packets:ip_tcp_dport80`).

Packets: 64..1500 bytes on the wire (random), Ethernet with IPv4 (TCP/UDP/ICMP, some with IP options or
fragmented), IPv6 and ARP, dst port 80 on a third of the TCP ones; each packet is given as its first 64
bytes (a snaplen-64 capture: the filter reads at most byte 41), one record per row, so `VM.run_batch` runs
the whole batch in one native call (a socket filter's run_batch is run_packets with one packet per row);
`test_jit_run_packets_full_size` runs `VM.run_packets` over the packets at their wire lengths, back to back
in one buffer as a pcap file holds them. Compared, per packet: the JIT (checked default and unchecked), the reference interpreter (on a
subset), libpcap's interpreter `bpf_filter` in a native C loop (needs a C compiler and libpcap; skipped
otherwise), and a vectorised numpy equivalent of the filter. Every engine's verdicts are checked against
the numpy ones. BPFJIT_BENCH_PACKETS sets the number of packets (default 1,000,000).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import cbaseline
from bpfjit import VM, Config, cbpf
from harness import fastest, record

N = int(os.environ.get("BPFJIT_BENCH_PACKETS", 1_000_000))
SNAP = 64
INTERP_N = 2_000
ROUNDS = 5
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "packets" / "filters" / "ip_tcp_dport80.ddd"
ACCEPT = 262144


def make_packets(n: int, seed: int = 80):
    """(records (n, SNAP) uint8, wire lengths uint32), built with numpy."""
    rng = np.random.default_rng(seed)
    rec = rng.integers(0, 256, size=(n, SNAP), dtype=np.uint8)
    kind = rng.random(n)
    etype = np.where(kind < 0.8, 0x0800, np.where(kind < 0.9, 0x86DD, 0x0806))
    rec[:, 12], rec[:, 13] = etype >> 8, etype & 0xFF
    ip = etype == 0x0800
    ihl = np.where(rng.random(n) < 0.9, 5, 6)
    rec[ip, 14] = (0x40 | ihl[ip]).astype(np.uint8)
    p = rng.random(n)
    proto = np.where(p < 0.7, 6, np.where(p < 0.9, 17, 1))
    rec[ip, 23] = proto[ip]
    frag = np.where(rng.random(n) < 0.02, rng.integers(1, 0x2000, n), 0)
    flags = rng.integers(0, 2, n) << 14                      # DF sometimes
    fw = flags | frag
    rec[ip, 20], rec[ip, 21] = (fw[ip] >> 8).astype(np.uint8), (fw[ip] & 0xFF).astype(np.uint8)
    dport = np.where(rng.random(n) < 0.33, 80, rng.integers(0, 65536, n))
    l4 = 14 + 4 * ihl
    rows = np.flatnonzero(ip)
    rec[rows, l4[rows] + 2] = (dport[rows] >> 8).astype(np.uint8)
    rec[rows, l4[rows] + 3] = (dport[rows] & 0xFF).astype(np.uint8)
    wire = rng.integers(64, 1501, n).astype(np.uint32)
    return rec, wire


def numpy_filter(rec: np.ndarray) -> np.ndarray:
    """`ip and tcp and dst port 80` vectorised over the records (as libpcap means it)."""
    r = rec.astype(np.uint32, copy=False) if rec.dtype != np.uint8 else rec
    etype = (r[:, 12].astype(np.uint16) << 8) | r[:, 13]
    frag = ((r[:, 20].astype(np.uint16) & 0x1F) << 8) | r[:, 21]
    l4 = 14 + (r[:, 14] & 0xF).astype(np.intp) * 4
    ok = (etype == 0x0800) & (r[:, 23] == 6) & (frag == 0) & (l4 + 4 <= r.shape[1])
    idx = np.flatnonzero(ok)
    port = (r[idx, l4[idx] + 2].astype(np.uint16) << 8) | r[idx, l4[idx] + 3]
    out = np.zeros(len(r), dtype=np.uint32)
    out[idx[port == 80]] = ACCEPT
    return out


@pytest.fixture(scope="module")
def packets():
    rec, wire = make_packets(N)
    return rec, wire, numpy_filter(rec)


@pytest.fixture(scope="module")
def prog():
    return cbpf.from_tcpdump(FIXTURE.read_text())


def _record(benchmark, per_call, fn, **info):
    out = benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    if not benchmark.disabled:
        record(benchmark, per_call, fastest(fn, ROUNDS, clock=time.thread_time_ns), kind="packets", **info)
    return out


@pytest.mark.parametrize("mode", ["checked", "unchecked"])
def test_jit_run_batch(benchmark, packets, prog, mode):
    benchmark.group = "packets:ip_tcp_dport80"
    rec, _, expected = packets
    cfg = Config() if mode == "checked" else Config(checked=False, insn_limit=None)
    vm = VM(prog, "jit", cfg)
    out = _record(benchmark, len(rec), lambda: vm.run_batch(rec, readonly=True), engine="jit", mode=mode)
    assert (out == expected).all() and 0.1 < (expected != 0).mean() < 0.5


@pytest.fixture(scope="module")
def full_packets(packets):
    """The same packets at their wire lengths (64..1500 bytes) back to back in one buffer, as
    bpfjit.pcap.read returns a capture: (Packets, expected verdicts). Bytes past the first 64 are zero."""
    from bpfjit.pcap import Packets
    rec, wire, expected = packets
    lens = wire.astype(np.int64)
    offs = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    data = np.zeros(int(lens.sum()), dtype=np.uint8)
    for lo in range(0, len(rec), 100_000):
        idx = offs[lo:lo + 100_000, None] + np.arange(SNAP)
        data[idx] = rec[lo:lo + 100_000]
    return Packets(data, offs, lens), expected


@pytest.mark.parametrize("mode", ["checked", "unchecked"])
def test_jit_run_packets_full_size(benchmark, full_packets, prog, mode):
    """VM.run_packets over the variable-length packets in one native call (the socket-filter path)."""
    benchmark.group = "packets:ip_tcp_dport80"
    pk, expected = full_packets
    cfg = Config() if mode == "checked" else Config(checked=False, insn_limit=None)
    vm = VM(prog, "jit", cfg)
    out = _record(benchmark, len(pk), lambda: vm.run_packets(pk, readonly=True), engine="jit run_packets",
                  mode=mode)
    assert (out == expected).all()


def test_interpreter(benchmark, packets, prog):
    benchmark.group = "packets:ip_tcp_dport80"
    rec, _, expected = packets
    sub = np.ascontiguousarray(rec[:INTERP_N])
    vm = VM(prog, "interp")
    out = _record(benchmark, len(sub), lambda: vm.run_batch(sub, readonly=True), engine="interp")
    assert (out == expected[:INTERP_N]).all()


@pytest.fixture(scope="module")
def pcap_loop(tmp_path_factory):
    lib = ctypes.util.find_library("pcap")
    if lib is None:
        pytest.skip("libpcap is not installed: no bpf_filter baseline")
    try:
        cc = cbaseline.find_compiler()
    except cbaseline.NoCompiler as e:
        pytest.skip(str(e))
    src = Path(__file__).parent / "c" / "pcap_filter_loop.c"
    so = tmp_path_factory.mktemp("pcap") / "pcap_filter_loop.so"
    res = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(src), f"-l:{lib}"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot build the bpf_filter loop: {res.stderr.strip()}")
    dll = ctypes.CDLL(str(so))
    f = dll.filter_records
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                  ctypes.c_void_p]
    return f


def test_libpcap_bpf_filter(benchmark, packets, prog, pcap_loop):
    benchmark.group = "packets:ip_tcp_dport80"
    rec, wire, expected = packets
    insns = np.array([(c, jt, jf, k) for c, jt, jf, k in prog.cbpf],
                     dtype=[("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])
    out = np.zeros(len(rec), dtype=np.uint32)

    def run():
        pcap_loop(insns.ctypes.data, rec.ctypes.data, SNAP, wire.ctypes.data, len(rec), out.ctypes.data)
        return out
    _record(benchmark, len(rec), run, engine="libpcap bpf_filter")
    assert (out == expected).all()


def test_numpy_vectorised(benchmark, packets):
    benchmark.group = "packets:ip_tcp_dport80"
    rec, _, expected = packets
    out = _record(benchmark, len(rec), lambda: numpy_filter(rec), engine="numpy")
    assert (out == expected).all()


# ---------------------------------------------------------------- an LPM lookup per packet
LPM_PROG = """
    ldxw %r2, [%r1+30]          # IPv4 destination address of the record
    stxw [%r10-4], %r2
    stw [%r10-8], 32
    lddw %r1, map(routes)
    mov %r2, %r10
    add %r2, -8
    call map_lookup_elem
    jeq %r0, 0, +2
    ldxdw %r0, [%r0+0]
    exit
    mov %r0, 0
    exit
"""


@pytest.fixture(scope="module")
def lpm_runtime(packets):
    from bpfjit.helpers import default_registry
    from bpfjit.helpers.map_helpers import register_map_helpers
    from bpfjit.maps import LpmTrieMap
    from bpfjit.runtime import Runtime
    rec = packets[0]
    rng = np.random.default_rng(5)
    routes = LpmTrieMap(8, 8, 4096, value_type=np.uint64)
    model = {}
    rows = rng.choice(len(rec), 1000, replace=False)
    for i, row in enumerate(rows):          # prefixes of addresses that occur, several lengths
        plen = int(rng.choice([8, 16, 20, 24, 32]))
        addr = int.from_bytes(rec[row, 30:34].tobytes(), "big")
        net = addr & (((1 << plen) - 1) << (32 - plen))
        routes[(plen, net)] = i + 1
        model[(plen, net)] = i + 1
    rt = Runtime(Config(), helpers=register_map_helpers(default_registry().copy()))
    rt.add_map(routes, "routes")
    return rt, model


def lpm_model(model, rec):
    out = []
    for r in rec:
        addr = int.from_bytes(r[30:34].tobytes(), "big")
        v = 0
        for plen in (32, 24, 20, 16, 8):
            v = model.get((plen, addr & (((1 << plen) - 1) << (32 - plen))), 0)
            if v:
                break
        out.append(v)
    return out


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_lpm_lookup_per_packet(benchmark, packets, lpm_runtime, engine):
    benchmark.group = "packets:lpm_lookup"
    rt, model = lpm_runtime
    rec = packets[0] if engine == "jit" else np.ascontiguousarray(packets[0][:INTERP_N])
    vm = VM(rt.assemble(LPM_PROG), engine, rt.config, runtime=rt)
    out = _record(benchmark, len(rec), lambda: vm.run_batch(rec, readonly=True), engine=engine)
    assert out[:INTERP_N].tolist() == lpm_model(model, rec[:INTERP_N])
    assert (out != 0).any()
