"""Classic BPF: load-time checks (bpf_check_classic rules), conversion to eBPF checked against the
reference cBPF interpreter in both engines (fixture tcpdump filters over a mixed pcap, random programs
over random packets, every opcode and edge), libpcap compile and its own bpf_filter as independent checks."""
from __future__ import annotations

import os
import random
import struct

import pytest

from . import pktdecode
from bpfjit import VM, BPFError, Config, LoadError, cbpf, pcap
from bpfjit.cbpf import SKF_AD, SKF_LL_OFF, SKF_NET_OFF, interp, libpcap
from bpfjit.cbpf.opcodes import OPS

LIBPCAP = libpcap.available()
needs_libpcap = pytest.mark.skipif(not LIBPCAP and not os.environ.get("CI"),
                                   reason="libpcap is not installed (CI installs it)")

RET_A = (0x16, 0, 0, 0)


def ret_k(k):
    return (0x06, 0, 0, k)


def run_both(prog, frame, engine):
    return VM(prog, engine).run(bytes(frame))


@pytest.fixture(scope="module")
def mixed():
    return pcap.read(pktdecode.DATA / "mixed.pcap")


# ---------------------------------------------------------------- fixtures: tcpdump filters over mixed.pcap
@pytest.mark.parametrize("name", sorted(pktdecode.filters()))
def test_fixture_filters_match_python_decoding(name, engine, mixed):
    prog = cbpf.from_tcpdump(pktdecode.ddd(name))
    vm = VM(prog, engine)
    hits = 0
    for frame in mixed:
        got = vm.run(frame)
        assert got == interp.run(prog.cbpf, frame)
        assert (got != 0) == pktdecode.matches(name, frame), (name, frame.hex())
        assert got in (0, 262144)
        hits += got != 0
    assert 0 < hits < len(mixed)          # every fixture filter selects some packets, not all


@pytest.mark.parametrize("name", sorted(pktdecode.filters()))
def test_fixture_filters_run_batch(name, engine, mixed):
    """Fixed-size records (packets zero-padded to 128 bytes): the batch path gives the per-run results."""
    prog = cbpf.from_tcpdump(pktdecode.ddd(name))
    recs = mixed.padded(128)
    got = VM(prog, engine).run_batch(recs)
    exp = [interp.run(prog.cbpf, r.tobytes()) for r in recs]
    assert got.tolist() == exp


# ---------------------------------------------------------------- random programs vs the reference
KS = [0, 1, 2, 3, 4, 7, 12, 13, 14, 20, 23, 31, 40, 63, 64, 100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF,
      0x800, 0x86DD]
ABS_KS = [0, 1, 2, 6, 12, 14, 20, 23, 30, 40, 60, 61, 62, 63, 64, 200, 0x7FFFFFFF, SKF_LL_OFF + 3,
          SKF_NET_OFF + 2, SKF_NET_OFF - 1, SKF_LL_OFF - 5] + \
         [v for n, v in SKF_AD.items() if n not in ("cpu", "random", "nlattr", "nlattr_nest", "pay_offset")]


def random_program(rng: random.Random, n: int):
    codes = [c for c, o in OPS.items() if o.kind not in ("ret",)]
    stored = rng.sample(range(16), 3)
    prog = [(0x00, 0, 0, rng.choice(KS)), (0x01, 0, 0, rng.choice(KS))]
    prog += [(rng.choice([0x02, 0x03]), 0, 0, k) for k in stored]
    while len(prog) < n - 1:
        pc = len(prog)
        if rng.random() < 0.08:
            prog.append(rng.choice([ret_k(rng.choice(KS)), RET_A]))
            continue
        code = rng.choice(codes)
        o = OPS[code]
        k = rng.choice(KS)
        jt = jf = 0
        if o.kind == "jmp":
            room = n - pc - 2
            if o.op == "ja":
                k = rng.randint(0, room)
            else:
                jt, jf = rng.randint(0, min(room, 255)), rng.randint(0, min(room, 255))
        elif o.op == "mem":
            k = rng.choice(stored) if o.kind in ("ld", "ldx") else rng.randrange(16)
        elif o.op in ("abs", "msh"):
            k = rng.choice(ABS_KS) & 0xFFFFFFFF
            if o.op == "msh" and k >= (SKF_AD["protocol"] & 0xFFFFFFFF):
                k = 14
        elif o.op == "ind":
            k = rng.choice([0, 1, 2, 14, 30, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0])
        elif o.kind == "alu" and o.src == "k":
            if o.op in ("div", "mod"):
                k = rng.choice([1, 2, 3, 7, 0x10000, 0xFFFFFFFF])
            elif o.op in ("lsh", "rsh"):
                k = rng.randrange(32)
        prog.append((code, jt, jf, k))
    prog.append(rng.choice([ret_k(rng.choice(KS)), RET_A]))
    return prog


def random_packets(rng: random.Random):
    pkts = [b"", bytes(5), bytes(14)]
    for _ in range(5):
        pkts.append(bytes(rng.randrange(256) for _ in range(rng.choice([1, 13, 14, 20, 34, 60, 64, 100]))))
    # a few Ethernet/IPv4 headers so that MSH/IND reach real data
    pkts.append(bytes(12) + b"\x08\x00\x45" + bytes(rng.randrange(256) for _ in range(60)))
    return pkts


@pytest.mark.parametrize("seed", range(6))
def test_random_programs_match_reference(seed, engine):
    rng = random.Random(1000 + seed)
    for _ in range(25):
        insns = random_program(rng, rng.randint(6, 40))
        prog = cbpf.load(insns)
        vm = VM(prog, engine)
        for pkt in random_packets(rng):
            assert vm.run(pkt) == interp.run(prog.cbpf, pkt), (insns, pkt.hex())


def test_random_programs_cover_every_opcode():
    rng = random.Random(1000)
    seen = set()
    for seed in range(6):
        rng = random.Random(1000 + seed)
        for _ in range(25):
            seen.update(c for c, *_ in random_program(rng, rng.randint(6, 40)))
            random_packets(rng)
    assert seen == set(OPS)


# ---------------------------------------------------------------- semantics, one behaviour each
def check_both(insns, pkt, expected, engine):
    prog = cbpf.load(insns)
    assert interp.run(prog.cbpf, pkt) == expected
    assert run_both(prog, pkt, engine) == expected


PKT = bytes(range(64))


@pytest.mark.parametrize("insns,pkt,expected", [
    ([(0x20, 0, 0, 0), RET_A], PKT, 0x00010203),                       # ld [0]
    ([(0x28, 0, 0, 62), RET_A], PKT, 0x3E3F),                          # ldh [62]: last two bytes
    ([(0x28, 0, 0, 63), RET_A], PKT, 0),                               # ldh past the end -> 0
    ([(0x30, 0, 0, 64), RET_A], PKT, 0),                               # ldb past the end
    ([(0x20, 0, 0, 0), RET_A], b"\x01\x02\x03", 0),                      # short packet returns 0, no fault
    ([(0x20, 0, 0, 0), RET_A], b"", 0),
    ([(0x01, 0, 0, 4), (0x40, 0, 0, 2), RET_A], PKT, 0x06070809),       # ld [x+2]
    ([(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 1), RET_A], PKT, 0),      # ldb [x+1]: x+k wraps to 0 (u32)
    ([(0x01, 0, 0, 0xFFFFFFFE), (0x50, 0, 0, 1), RET_A], PKT, 0),      # x+k = -1: negative -> 0
    ([(0x01, 0, 0, 60), (0x48, 0, 0, 3), RET_A], PKT, 0),              # ldh [x+3] past the end
    ([(0x80, 0, 0, 0), RET_A], PKT, 64),                                # ld len
    ([(0x81, 0, 0, 0), (0x87, 0, 0, 0), RET_A], PKT[:9], 9),             # ldx len; txa
    ([(0xB1, 0, 0, 14), (0x87, 0, 0, 0), RET_A], PKT, 4 * (14 & 0xF)),  # ldxb 4*([14]&0xf)
    ([(0x00, 0, 0, 5), (0xB1, 0, 0, 64), RET_A], PKT, 0),              # msh past the end -> 0
    ([(0x00, 0, 0, 7), (0xB1, 0, 0, 1), RET_A], PKT, 7),               # msh keeps A
    ([(0x20, 0, 0, SKF_LL_OFF + 4), RET_A], PKT, 0x04050607),           # link-layer offset = frame offset
    ([(0x30, 0, 0, SKF_NET_OFF + 1), RET_A], PKT, 15),                  # network offset: 14 + 1
    ([(0x30, 0, 0, SKF_LL_OFF - 1), RET_A], PKT, 0),                    # below SKF_LL_OFF: 0
    ([(0x00, 0, 0, 100), (0x34, 0, 0, 7), RET_A], PKT, 14),             # div #7
    ([(0x00, 0, 0, 100), (0x94, 0, 0, 7), RET_A], PKT, 2),              # mod #7
    ([(0x00, 0, 0, 100), (0x3C, 0, 0, 0), ret_k(9)], PKT, 0),          # div by X = 0 returns 0
    ([(0x00, 0, 0, 100), (0x9C, 0, 0, 0), ret_k(9)], PKT, 0),          # mod by X = 0 returns 0
    ([(0x00, 0, 0, 100), (0x01, 0, 0, 3), (0x3C, 0, 0, 0), RET_A], PKT, 33),
    ([(0x00, 0, 0, 5), (0x84, 0, 0, 0), RET_A], PKT, 0xFFFFFFFB),       # neg
    ([(0x00, 0, 0, 0xFFFFFFFF), (0x04, 0, 0, 2), RET_A], PKT, 1),       # add wraps at 32 bits
    ([(0x00, 0, 0, 0x80000000), (0x24, 0, 0, 2), RET_A], PKT, 0),       # mul wraps
    ([(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), RET_A], PKT, 2),   # lsh x: x & 31
    ([(0x00, 0, 0, 0xF0), (0xA4, 0, 0, 0xFF), RET_A], PKT, 0x0F),       # xor
    ([(0x00, 0, 0, 0xF0), (0x54, 0, 0, 0x3C), (0x44, 0, 0, 1), RET_A], PKT, 0x31),   # and, or
    ([(0x00, 0, 0, 0x80000000), (0x74, 0, 0, 31), RET_A], PKT, 1),     # rsh is logical
    ([(0x00, 0, 0, 0xFFFFFFFF), (0x15, 0, 1, 0xFFFFFFFF), ret_k(1), ret_k(2)], PKT, 1),  # jeq k >= 2^31
    ([(0x00, 0, 0, 0x80000000), (0x25, 0, 1, 0x7FFFFFFF), ret_k(1), ret_k(2)], PKT, 1),  # jgt unsigned
    ([(0x00, 0, 0, 5), (0x35, 0, 1, 5), ret_k(1), ret_k(2)], PKT, 1),                  # jge equal
    ([(0x00, 0, 0, 5), (0x45, 1, 0, 2), ret_k(1), ret_k(2)], PKT, 1),                  # jset miss -> jf
    ([(0x00, 0, 0, 0x80000000), (0x45, 0, 1, 0x80000000), ret_k(1), ret_k(2)], PKT, 1),
    ([(0x00, 0, 0, 9), (0x01, 0, 0, 9), (0x1D, 0, 1, 0), ret_k(1), ret_k(2)], PKT, 1),  # jeq x
    ([(0x00, 0, 0, 9), (0x01, 0, 0, 10), (0x2D, 1, 0, 0), ret_k(1), ret_k(2)], PKT, 1),  # jgt x false
    ([(0x00, 0, 0, 10), (0x01, 0, 0, 10), (0x3D, 0, 1, 0), ret_k(1), ret_k(2)], PKT, 1),  # jge x
    ([(0x00, 0, 0, 6), (0x01, 0, 0, 2), (0x4D, 0, 1, 0), ret_k(1), ret_k(2)], PKT, 1),   # jset x
    ([(0x05, 0, 0, 1), ret_k(1), ret_k(2)], PKT, 2),                                       # ja
    ([(0x00, 0, 0, 7), (0x02, 0, 0, 15), (0x00, 0, 0, 0), (0x61, 0, 0, 15), (0x87, 0, 0, 0), RET_A], PKT, 7),
    ([(0x01, 0, 0, 3), (0x03, 0, 0, 0), (0x60, 0, 0, 0), RET_A], PKT, 3),                 # stx; ld M[]
    ([(0x00, 0, 0, 3), (0x07, 0, 0, 0), (0x00, 0, 0, 0), (0x87, 0, 0, 0), RET_A], PKT, 3),  # tax/txa
    ([ret_k(0xFFFFFFFF)], PKT, 0xFFFFFFFF),
    ([RET_A], PKT, 0),                                                                     # A starts at 0
])
def test_semantics(insns, pkt, expected, engine):
    check_both(insns, pkt, expected, engine)


def eth_frame(dst=b"\x02" + bytes(5), etype=0x800, size=60):
    return (dst + b"\x02\0\0\0\0\1" + struct.pack("!H", etype)).ljust(size, b"\0")


@pytest.mark.parametrize("name,pkt,expected", [
    ("protocol", eth_frame(etype=0x86DD), 0x86DD),
    ("protocol", eth_frame()[:13], 0),
    ("pkttype", eth_frame(), 0),
    ("pkttype", eth_frame(dst=b"\xff" * 6), 1),
    ("pkttype", eth_frame(dst=b"\x01\x00\x5e\0\0\1"), 2),
    ("pkttype", eth_frame(dst=b"\xff" * 5 + b"\xfe"), 2),
    ("pkttype", b"\xff" * 5, 0),
    ("hatype", eth_frame(), 1),
    ("ifindex", eth_frame(), 0),
    ("mark", eth_frame(), 0),
    ("vlan_tag_present", eth_frame(), 0),
])
@pytest.mark.parametrize("size", (0x20, 0x28, 0x30))
def test_ancillary_loads(name, pkt, expected, size, engine):
    check_both([(size, 0, 0, SKF_AD[name] & 0xFFFFFFFF), RET_A], pkt, expected, engine)


def test_ancillary_constants_and_xor(engine):
    insns = [(0x20, 0, 0, SKF_AD["mark"] & 0xFFFFFFFF), (0x07, 0, 0, 0), (0x00, 0, 0, 0x0F),
             (0x20, 0, 0, SKF_AD["alu_xor_x"] & 0xFFFFFFFF), RET_A]
    prog = cbpf.load(insns, anc={"mark": 0xF0F0})
    assert run_both(prog, PKT, engine) == 0xF0FF == interp.run(prog.cbpf, PKT, anc={"mark": 0xF0F0})


def test_ancillary_cpu_and_random(engine):
    cpu = cbpf.load([(0x20, 0, 0, SKF_AD["cpu"] & 0xFFFFFFFF), RET_A])
    assert run_both(cpu, PKT, engine) == VM(cpu, "interp").run(PKT) < (os.cpu_count() or 1) * 64
    rnd = cbpf.load([(0x20, 0, 0, SKF_AD["random"] & 0xFFFFFFFF), (0x07, 0, 0, 0),
                     (0x20, 0, 0, SKF_AD["random"] & 0xFFFFFFFF), (0x1D, 1, 0, 0), ret_k(1), ret_k(2)])
    vm = VM(rnd, engine)
    assert {vm.run(PKT) for _ in range(20)} == {1}          # two draws differ (equal would return 2)


@pytest.mark.parametrize("name", ["nlattr", "nlattr_nest", "pay_offset"])
def test_unsupported_ancillary_refused(name):
    with pytest.raises(LoadError) as e:
        cbpf.load([(0x00, 0, 0, 0), (0x20, 0, 0, SKF_AD[name] & 0xFFFFFFFF), RET_A])
    assert e.value.pc == 1 and e.value.field == "k" and "not supported" in str(e.value)


def test_unknown_ancillary_constant_refused():
    with pytest.raises(LoadError, match="unknown ancillary constant"):
        cbpf.load([RET_A], anc={"colour": 1})


@pytest.mark.parametrize("insns,kw,match", [
    (None, {}, "sequence"),
    ("6 0 0 0", {}, "sequence"),
    ([RET_A], {"anc": {"mark": "x"}}, "u32 integer"),
    ([RET_A], {"anc": {"mark": -1}}, "u32 integer"),
    ([RET_A], {"nhoff": -1}, "nhoff"),
    ([RET_A], {"nhoff": "14"}, "nhoff"),
])
def test_bad_arguments(insns, kw, match):
    with pytest.raises(LoadError, match=match):
        cbpf.load(insns, **kw)


def test_unchecked_jit_keeps_packet_semantics(mixed):
    """Config(checked=False) drops memory checks, not the packet-bounds rule of ld abs/ind."""
    cfg = Config(checked=False, insn_limit=None)
    for name in ("ip_tcp_dport80", "host_10_0_0_1", "vlan_udp"):
        prog = cbpf.from_tcpdump(pktdecode.ddd(name), config=cfg)
        vm = VM(prog, "jit", cfg)
        assert [vm.run(f) for f in mixed] == [interp.run(prog.cbpf, f) for f in mixed]
        assert vm.run(b"\x00" * 13) == 0


def test_nhoff_option(engine):
    prog = cbpf.load([(0x30, 0, 0, SKF_NET_OFF + 1), RET_A], nhoff=0)
    assert run_both(prog, PKT, engine) == 1


# ---------------------------------------------------------------- load-time checks
@pytest.mark.parametrize("insns,pc,field,match", [
    ([], None, None, "empty"),
    ([ret_k(0)] * 4097, None, None, "more than 4096"),
    ([(0xFFFF, 0, 0, 0), RET_A], 0, "code", "unknown classic BPF opcode"),
    ([(0x08, 0, 0, 0), RET_A], 0, "code", "unknown"),                    # LD|H|IMM is not a kernel code
    ([(0x0E, 0, 0, 0), RET_A], 0, "code", "unknown"),                    # RET|X
    ([(0x34, 0, 0, 0), RET_A], 0, "k", "div by constant 0"),
    ([(0x94, 0, 0, 0), RET_A], 0, "k", "mod by constant 0"),
    ([(0x64, 0, 0, 32), RET_A], 0, "k", "lsh by constant 32"),
    ([(0x02, 0, 0, 16), RET_A], 0, "k", "scratch memory index 16"),
    ([(0x60, 0, 0, 16), RET_A], 0, "k", "scratch memory index 16"),
    ([(0x05, 0, 0, 1), RET_A], 0, "k", "outside the program"),
    ([(0x15, 1, 0, 0), RET_A], 0, "jt", "outside the program"),
    ([(0x15, 0, 2, 0), RET_A, RET_A], 0, "jf", "outside the program"),
    ([(0x00, 0, 0, 0)], 0, "code", "last instruction must be a ret"),
    ([(0x60, 0, 0, 3), RET_A], 0, "k", "loaded before it is stored"),
    ([(0x15, 0, 1, 0), (0x02, 0, 0, 3), (0x61, 0, 0, 3), RET_A], 2, "k", "loaded before it is stored"),
    ([(0x20, 0, 0, 0xFFFFF000 + 64), RET_A], 0, "k", "unknown ancillary load"),
    ([(0x20, 0, 0, 0xFFFFF000 + 2), RET_A], 0, "k", "unknown ancillary load"),
    ([(0x20, 0, 0, 1 << 32), RET_A], 0, "k", "out of range"),
    ([(0x20, 256, 0, 0), RET_A], 0, "jt", "out of range"),
    ([(0x20, 0, 0), RET_A], 0, None, "4 fields"),
    ([(0x20, 0, 0, "x"), RET_A], 0, "k", "integer"),
    ([None], 0, None, "tuple"),
])
def test_check_refuses(insns, pc, field, match):
    with pytest.raises(LoadError, match=match) as e:
        cbpf.load(insns)
    assert e.value.pc == pc and e.value.field == field


def test_store_on_every_path_is_accepted(engine):
    insns = [(0x15, 0, 2, 0), (0x02, 0, 0, 3), (0x05, 0, 0, 1), (0x02, 0, 0, 3), (0x61, 0, 0, 3),
             (0x87, 0, 0, 0), RET_A]
    check_both(insns, PKT, 0, engine)


def test_signed_k_is_accepted():
    assert cbpf.load([(0x20, 0, 0, SKF_LL_OFF), RET_A]).cbpf[0].k == SKF_LL_OFF & 0xFFFFFFFF


def test_program_metadata():
    prog = cbpf.load([(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), ret_k(65535), ret_k(0)])
    assert prog.prog_type == "socket_filter" and prog.name == "cbpf"
    assert prog.cbpf[1] == cbpf.SockFilter(0x15, 0, 1, 0x800)
    assert "jeq #0x800 jt 2 jf 3" in cbpf.disassemble(prog.cbpf)
    assert "ldabsh 12" in prog.disassemble()


# ---------------------------------------------------------------- tcpdump -ddd text
def test_from_tcpdump_roundtrip(engine):
    text = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"
    prog = cbpf.from_tcpdump(text)
    assert run_both(prog, eth_frame(), engine) == 262144
    assert run_both(prog, eth_frame(etype=0x806), engine) == 0


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("x\n6 0 0 0\n", "line 1: expected the instruction count"),
    ("2\n6 0 0 0\n", "count 2 but 1"),
    ("1\n6 0 0\n", "line 2: expected 'code jt jf k'"),
    ("1\n6 0 0 zz\n", "line 2"),
    ("1\n999 0 0 0\n", "unknown classic BPF opcode"),
])
def test_from_tcpdump_errors(text, match):
    with pytest.raises(LoadError, match=match):
        cbpf.from_tcpdump(text)


def test_from_tcpdump_rejects_non_text():
    with pytest.raises(LoadError):
        cbpf.from_tcpdump(b"1\n6 0 0 0\n")


# ---------------------------------------------------------------- libpcap
@needs_libpcap
@pytest.mark.parametrize("name", sorted(pktdecode.filters()))
def test_compile_matches_tcpdump_fixture(name):
    expr = pktdecode.filters()[name]
    assert libpcap.compile_insns(expr, snaplen=262144) == cbpf.parse_tcpdump(pktdecode.ddd(name))


@needs_libpcap
def test_compile_runs(engine, mixed):
    prog = cbpf.compile("tcp port 80 and not host 10.0.0.1")
    assert prog.cbpf[-1].code == 0x06
    vm = VM(prog, engine)
    got = [vm.run(f) for f in mixed]
    assert got == [interp.run(prog.cbpf, f) for f in mixed] and set(got) >= {0, 65535}


@needs_libpcap
def test_libpcap_bpf_filter_agrees_with_reference(mixed):
    for name in pktdecode.filters():
        prog = cbpf.from_tcpdump(pktdecode.ddd(name))
        f = libpcap.PcapFilter(prog.cbpf)
        assert [f(p) for p in mixed] == [interp.run(prog.cbpf, p) for p in mixed]
        assert f.run_many(mixed.data, mixed.offsets, mixed.lengths).tolist() == [f(p) for p in mixed]


@needs_libpcap
def test_compile_error_is_bpferror():
    with pytest.raises(BPFError, match="cannot compile filter"):
        cbpf.compile("tcp port nonsense-port-name and (")
    with pytest.raises(BPFError, match="must be a string"):
        cbpf.compile(42)


def test_compile_without_libpcap(monkeypatch):
    monkeypatch.setattr(libpcap, "_LIB", None)
    monkeypatch.setattr(libpcap.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(BPFError, match="libpcap is not installed"):
        cbpf.compile("ip")
    assert not libpcap.available()


def test_mutated_programs_load_or_raise_load_error(engine):
    """Random field mutations of valid programs: LoadError, or a program that agrees with the reference."""
    rng = random.Random(77)
    loaded = 0
    for _ in range(150):
        insns = [list(i) for i in random_program(rng, rng.randint(4, 20))]
        for _ in range(rng.randint(1, 3)):
            ins = rng.choice(insns)
            fld = rng.randrange(4)
            ins[fld] = rng.choice([0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, -1, 0xFFFFFFFF, rng.randrange(1 << 16)])
        try:
            prog = cbpf.load([tuple(i) for i in insns])
        except LoadError:
            continue
        loaded += 1
        vm = VM(prog, engine)
        for pkt in random_packets(rng)[:4]:
            assert vm.run(pkt) == interp.run(prog.cbpf, pkt)
    assert loaded > 10
