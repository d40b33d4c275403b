"""Packet programs the verifier accepts run without faults (a verifier that accepts a faulting program is a
bug), in both engines, before bpfjit has packet program types of its own.

Each accepted case of tests/verifier/{packet,ctx_fields}.txt (test_* program types) is turned into a raw
program over one buffer [context | 24 scratch bytes | metadata | packet]: every 4-byte load of a
data / data_end / data_meta field through the context pointer becomes an 8-byte load of the scratch slot
holding the real 64-bit address (same instruction count, so every jump stays). The packet ends the buffer,
so checked mode faults on any read or write past data_end. Every packet length from 0 to past the largest
offset the cases test, random contents, with and without metadata. Also random packet checks in every jump
form, and clang-built parsers (tests/verifier/c: XDP Ethernet/VLAN/IPv4-with-options/IPv6/TCP/UDP, a tc
program rewriting the packet with a bounded loop, XDP metadata) verified, then run on frames cut at every
length with their verdicts checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, Config, Program
from bpfjit.errors import RuntimeFault

from .verifier_cases import TEST_PROG_TYPES, build, case_runtime, load_cases

RT = case_runtime()
KINDS = ("pkt", "pkt_end", "pkt_meta")
PACKET_CASES = [c for c in load_cases() if c.accept and c.options.get("prog_type") in TEST_PROG_TYPES]
LDXW, LDXDW, MOV64_REG = 0x61, 0x79, 0xBF


def _scratch(ptype) -> int:
    return (ptype.ctx_size + 7) // 8 * 8


def to_raw(prog: Program, ptype) -> Program:
    """The program with loads of packet pointer fields redirected to the scratch slots (ctx registers tracked
    along the straight-line order: r1 at entry, copies by mov; enough for the hand-written cases)."""
    base = _scratch(ptype)
    slot = {f.off: base + 8 * KINDS.index(f.kind) for f in ptype.fields if f.kind != "scalar"}
    ctx = {1}
    out = []
    for ins in prog.insns:
        if ins.opcode == LDXW and ins.src in ctx and ins.off in slot:
            ins = ins._replace(opcode=LDXDW, off=slot[ins.off])
        cls = ins.opcode & 0x07
        if ins.opcode == MOV64_REG:
            (ctx.add if ins.src in ctx else ctx.discard)(ins.dst)
        elif cls in (0x01, 0x04, 0x07) or ins.opcode == 0x18:      # ldx, alu, alu64, lddw write dst
            ctx.discard(ins.dst)
        elif ins.opcode == 0x85 and ins.src != 1:                  # a helper call clobbers r1-r5
            ctx.difference_update(range(1, 6))
        out.append(ins)
    return Program.from_insns(out, license=prog.license, maps=prog.maps)


def packet_buffer(ptype, packet: np.ndarray, meta_len: int) -> np.ndarray:
    base = _scratch(ptype)
    head = base + 24
    buf = np.zeros(head + meta_len + len(packet), np.uint8)
    buf[head + meta_len:] = packet
    addr = buf.ctypes.data
    slots = buf[base:base + 24].view("<u8")
    slots[0] = addr + head + meta_len                 # data
    slots[1] = addr + head + meta_len + len(packet)   # data_end
    slots[2] = addr + head                            # data_meta
    return buf


def _calls_helpers(prog: Program) -> bool:
    return any(ins.opcode == 0x85 and ins.src == 0 for ins in prog.insns)


def _run_as_packet_type(case, prog: Program, ptype, engine) -> None:
    """A case that calls helpers (which need a real packet run: xdp_adjust_head ...) runs as its real
    program type over packets with run_packets, checked, on every length."""
    real = Program.from_insns(list(prog.insns), license=prog.license, maps=prog.maps, prog_type=ptype.name)
    vm = VM(real, engine, Config(safety="checked"), runtime=RT)
    rng = np.random.default_rng(abs(hash(case.id)) % (1 << 32))
    packets = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in list(range(0, 20)) + [64, 200]]
    try:
        out = vm.run_packets(packets)
    except RuntimeFault as e:
        raise AssertionError(f"{case.id}: verified program faulted as {ptype.name}: {e}") from None
    assert len(out) == len(packets)


@pytest.mark.parametrize("case", PACKET_CASES, ids=[c.id for c in PACKET_CASES])
def test_accepted_packet_program_runs_without_faults(case, engine):
    prog, kw = build(case, RT)
    ptype = kw["prog_type"]
    if _calls_helpers(prog):
        _run_as_packet_type(case, prog, ptype, engine)
        return
    vm = VM(to_raw(prog, ptype), engine, Config(safety="checked"), runtime=RT)
    rng = np.random.default_rng(abs(hash(case.id)) % (1 << 32))
    runs = 0
    for length in list(range(0, 20)) + [64, 200]:
        for meta_len in (0, 4, 8):
            packet = rng.integers(0, 256, length, dtype=np.uint8)
            buf = packet_buffer(ptype, packet, meta_len)
            try:
                vm.run(buf)
            except RuntimeFault as e:
                raise AssertionError(f"{case.id}: verified program faulted on a {length}-byte packet "
                                     f"(meta {meta_len}): {e}") from None
            runs += 1
    assert runs == 66


def test_the_harness_catches_an_overread(engine):
    """The transformed run faults where the verifier refuses: a read one byte past the checked range."""
    src = """
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, +2
        ldxb %r0, [%r2+14]
        exit
        mov %r0, 0
        exit
    """
    ptype = TEST_PROG_TYPES["test_xdp"]
    vm = VM(to_raw(Program.from_asm(src), ptype), engine, Config(safety="checked"))
    assert vm.run(packet_buffer(ptype, np.arange(15, dtype=np.uint8), 0)) == 14
    with pytest.raises(RuntimeFault):
        vm.run(packet_buffer(ptype, np.arange(14, dtype=np.uint8), 0))


# ------------------------------------------------------------------------------------ random packet checks
_JUMPS = ("jgt", "jge", "jlt", "jle") * 3 + ("jeq", "jne", "jsgt", "jsle")


def random_packet_program(rnd) -> str:
    """Blocks of `r4 = data + K (or r4 kept); if r4 OP data_end (either order), on one side a read at
    data + OFF`,
    then a read both sides reach: every jump form against every offset near the learned range. Half of the
    programs first add a variable (a masked packet byte) to data: the blocks then work on that pointer."""
    lines = ["ldxw %r2, [%r1+0]", "ldxw %r3, [%r1+4]", "mov %r0, 0"]
    var = rnd.random() < 0.5
    if var:
        lines += ["mov %r4, %r2", "add %r4, 1", "JUMP_TO_EXIT", "ldxb %r6, [%r2+0]",
                  f"and %r6, {rnd.choice((3, 15, 31, 0xff))}", "add %r2, %r6"]
    lines.append("mov %r4, %r2")
    k = 0
    for _ in range(rnd.randint(1, 2)):
        if rnd.random() < 0.7:
            k = rnd.randint(0, 16)
            lines += ["mov %r4, %r2", f"add %r4, {k}"]
        a, b = ("%r4", "%r3") if rnd.random() < 0.5 else ("%r3", "%r4")
        if rnd.random() < 0.5:
            lines.append(f"{rnd.choice(_JUMPS)} {a}, {b}, +1")          # the read on the fall-through side
        else:
            lines += [f"{rnd.choice(_JUMPS)} {a}, {b}, +1", "ja +1"]    # the read on the taken side
        off = rnd.randint(k - 2, k + 1) if rnd.random() < 0.8 else rnd.randint(-1, 17)
        lines.append(f"ldxb %r5, [%r2{off:+d}]" if rnd.random() < 0.8 else "mov %r5, 0")
        lines.append(f"ldxb %r0, [%r2+{rnd.randint(0, 17)}]" if rnd.random() < 0.15 else "add %r0, 1")
    lines.append("exit")
    if var:
        i = lines.index("JUMP_TO_EXIT")
        lines[i] = f"jgt %r4, %r3, +{len(lines) - i - 2}"
    return "\n".join(lines)


def test_random_packet_checks_accepted_never_fault(engine):
    import random

    from bpfjit.errors import VerifierError
    from bpfjit.verifier import verify
    rnd = random.Random(1234)
    rng = np.random.default_rng(1234)
    ptype = TEST_PROG_TYPES["test_xdp"]
    accepted = refused = 0
    for _ in range(150):
        prog = Program.from_asm(random_packet_program(rnd))
        try:
            verify(prog, prog_type=ptype)
        except VerifierError:
            refused += 1
            continue
        accepted += 1
        vm = VM(to_raw(prog, ptype), engine, Config(safety="checked"))
        for length in range(0, 19 if "%r6" not in prog.source else 40):
            try:
                vm.run(packet_buffer(ptype, rng.integers(0, 256, length, dtype=np.uint8), 0))
            except RuntimeFault as e:
                raise AssertionError(f"verified program faulted on a {length}-byte packet: {e}\n"
                                     f"{prog.source}") from None
    assert accepted >= 20 and refused >= 80, (accepted, refused)


# ------------------------------------------------------------------------------------ clang-built programs
C_DIR = Path(__file__).parent / "verifier" / "c"
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


def _c_prog(name: str) -> Program:
    return Program.from_bytes((C_DIR / f"{name}.bin").read_bytes(), license="GPL")


def _frame(ethertype: int, payload: bytes, vlans: int = 0) -> bytes:
    eth = bytes(range(1, 7)) + bytes(range(11, 17))
    for _ in range(vlans):
        eth += (0x8100).to_bytes(2, "big") + (5).to_bytes(2, "big")
    return eth + ethertype.to_bytes(2, "big") + payload


def _ipv4(proto: int, l4: bytes, ihl: int = 5) -> bytes:
    hdr = bytes([0x40 | ihl, 0]) + (20 + len(l4)).to_bytes(2, "big") + bytes(5) + bytes([proto]) + bytes(10)
    return hdr + bytes(4 * (ihl - 5)) + l4


def _tcp(dport: int) -> bytes:
    return (1234).to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(16)


def _udp(dport: int) -> bytes:
    return (1234).to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(4)


XDP_FRAMES = [   # (frame, verdict of xdp_parse on the whole frame)
    (_frame(0x0800, _ipv4(6, _tcp(80))), XDP_DROP),
    (_frame(0x0800, _ipv4(6, _tcp(443))), XDP_PASS),
    (_frame(0x0800, _ipv4(6, _tcp(80), ihl=7)), XDP_DROP),
    (_frame(0x0800, _ipv4(17, _udp(53)), vlans=1), XDP_TX),
    (_frame(0x0800, _ipv4(17, _udp(53)), vlans=2), XDP_TX),
    (_frame(0x86DD, bytes([0x60]) + bytes(5) + bytes([6, 64]) + bytes(32) + _tcp(80)), XDP_DROP),
    (_frame(0x0806, bytes(28)), XDP_PASS),
]


@pytest.mark.parametrize("name,ptype,kind", [("xdp", "test_xdp", "pkt"), ("tc", "test_tc", "pkt"),
                                             ("xdp_meta", "test_xdp", "pkt_meta")])
def test_clang_packet_programs_verify(name, ptype, kind):
    from bpfjit.verifier import verify
    res = verify(_c_prog(name), prog_type=TEST_PROG_TYPES[ptype])
    assert res.proven and kind in set().union(*res.access_types.values())


def test_clang_short_check_is_refused():
    from bpfjit.errors import VerifierError
    from bpfjit.verifier import verify
    with pytest.raises(VerifierError) as ei:
        verify(_c_prog("xdp_short"), prog_type=TEST_PROG_TYPES["test_xdp"])
    assert (ei.value.pc, ei.value.reason) == (7, "invalid access to packet, off=13 size=1, R1(id=0,off=13,r=13)")


def test_clang_xdp_parser_runs_every_truncation(engine):
    """The verified parser on each frame cut at every length: no fault, and the whole frame's verdict."""
    ptype = TEST_PROG_TYPES["test_xdp"]
    vm = VM(to_raw(_c_prog("xdp"), ptype), engine, Config(safety="checked"))
    for frame, verdict in XDP_FRAMES:
        for n in range(len(frame) + 1):
            r = vm.run(packet_buffer(ptype, np.frombuffer(frame[:n], np.uint8), 0))
            if n == len(frame):
                assert r == verdict, frame.hex()
            elif n < 14:
                assert r == XDP_ABORTED


def test_clang_tc_program_writes_the_packet(engine):
    ptype = TEST_PROG_TYPES["test_tc"]
    vm = VM(to_raw(_c_prog("tc"), ptype), engine, Config(safety="checked"))
    frame, _ = XDP_FRAMES[0]
    for n in (0, 13, 14, 40, len(frame)):
        buf = packet_buffer(ptype, np.frombuffer(frame[:n], np.uint8), 0)
        r = vm.run(buf)
        pkt = bytes(buf[len(buf) - n:])
        if n < 14:
            assert r == 2 and pkt == frame[:n]
            continue
        assert r == 0
        assert pkt[:6] == frame[6:12] and pkt[6:12] == frame[:6] and pkt[12:] == frame[12:n]
        assert int(buf[8:12].view("<u4")[0]) == sum(pkt[:64])


def test_clang_meta_program_reads_metadata(engine):
    ptype = TEST_PROG_TYPES["test_xdp"]
    vm = VM(to_raw(_c_prog("xdp_meta"), ptype), engine, Config(safety="checked"))
    pkt = np.zeros(20, np.uint8)
    assert vm.run(packet_buffer(ptype, pkt, 0)) == XDP_PASS
    buf = packet_buffer(ptype, pkt, 4)
    head = len(buf) - 20 - 4
    buf[head:head + 4] = np.frombuffer((7).to_bytes(4, "little"), np.uint8)
    assert vm.run(buf) == XDP_DROP


def test_clang_instruction_dumps_are_current(tmp_path):
    """tests/verifier/c/*.bin are what `make -C tests/verifier/c` builds from packet_progs.c."""
    import os
    import shutil
    import subprocess
    clang = shutil.which("clang-19")
    objcopy = shutil.which("llvm-objcopy-19") or shutil.which("llvm-objcopy")
    if clang is None or objcopy is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        if os.environ.get("CI"):
            pytest.fail("clang-19, llvm-objcopy and libbpf-dev are required in CI")
        pytest.skip("clang-19 / llvm-objcopy / libbpf-dev not installed: cannot rebuild tests/verifier/c")
    for f in ("packet_progs.c", "Makefile"):
        shutil.copy(C_DIR / f, tmp_path / f)
    subprocess.run(["make", "-s", "-C", str(tmp_path), f"OBJCOPY={objcopy}", "packet"], check=True,
                   capture_output=True)
    for b in sorted(C_DIR.glob("*.bin")):
        assert (tmp_path / b.name).read_bytes() == b.read_bytes(), b.name


def test_packet_log_level_2():
    """The kernel's register text for packet pointers: pkt(off=..,r=..), pkt_end(), the range after a check
    on the side it holds, the past-the-end mark (r=-2) on the other."""
    from bpfjit.verifier import verify
    src = """
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, +2
        ldxb %r0, [%r2+13]
        exit
        mov %r0, 0
        exit
    """
    log = verify(Program.from_asm(src), prog_type=TEST_PROG_TYPES["test_xdp"], log_level=2).log
    assert "0: (61) r2 = *(u32 *)(r1 +0) ; R2_w=pkt(r=0)\n1: (61) r3 = *(u32 *)(r1 +4) ; R3_w=pkt_end()\n" in log
    assert "3: (07) r4 += 14 ; R4_w=pkt(off=14,r=0)\n" in log
    assert "4: (2d) if r4 > r3 goto pc+2 ; R2_w=pkt(r=14) R4_w=pkt(off=14,r=14)\n" in log
    assert "from 4 to 7: R1=ctx() R2=pkt(r=0) R3=pkt_end() R4=pkt(off=14,r=-2) R10=fp0\n" in log
