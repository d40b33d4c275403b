"""Verification time (bpfjit.verifier.verify) of generated raw programs with loops: a 1,000-instruction
program (bar: <= 50 ms), the growth with program size (250 .. 4,000 instructions), and a program whose
state exploration processes about 100,000 instructions (bar: <= 5 s), and XDP-style packet parsing (250 ..
4,000 instructions: packet range checks, short loops). Group `verify`.
"""
from __future__ import annotations

import pytest

from bpfjit import Program
from bpfjit.verifier import verify
from harness import time_calls

MEM = 64
BLOCK = """
    mov %r3, 0
l{i}:
    mov %r5, %r3
    and %r5, 31
    mov %r6, %r1
    add %r6, %r5
    ldxb %r4, [%r6+{o}]
    add %r0, %r4
    stxdw [%r10-{s}], %r0
    add %r3, 1
    jlt %r3, 4, l{i}
    jgt %r0, 1000, +2
    ldxdw %r7, [%r10-{s}]
    xor %r0, %r7
    rsh %r0, 1
"""
BLOCK_SLOTS = 13


def loop_program(n_insns: int) -> Program:
    """About n_insns instructions: blocks of a 4-iteration loop over masked offsets of a 64-byte memory,
    a stack spill and fill and a branch."""
    body = "".join(BLOCK.format(i=i, o=i % 32, s=8 * (1 + i % 60)) for i in range(max(1, n_insns // BLOCK_SLOTS)))
    return Program.from_asm("    mov %r0, 0\n" + body + "    exit\n", name=f"loops{n_insns}")


def long_loop_program(iterations: int) -> Program:
    """One counted loop of 10 instructions: about 10 * iterations processed instructions."""
    return Program.from_asm(f"""
        mov %r0, 0
        mov %r3, 0
    loop:
        mov %r5, %r3
        and %r5, 63
        mov %r6, %r1
        add %r6, %r5
        ldxb %r4, [%r6+0]
        add %r0, %r4
        stxdw [%r10-8], %r0
        add %r3, 1
        jlt %r3, {iterations}, loop
        exit
    """, name=f"long_loop{iterations}")


@pytest.mark.parametrize("n", (250, 500, 1000, 2000, 4000))
def test_verify_loops(benchmark, n):
    benchmark.group = "verify"
    prog = loop_program(n)
    res = time_calls(benchmark, lambda: verify(prog, mem_size=MEM), rounds=5, iterations=1, kind="verify",
                     program=prog.name, insns=len(prog))
    assert res.proven
    benchmark.extra_info["insn_processed"] = res.insn_processed


def test_verify_100k_processed(benchmark):
    benchmark.group = "verify"
    prog = long_loop_program(10_000)
    res = time_calls(benchmark, lambda: verify(prog, mem_size=MEM), rounds=3, iterations=1, kind="verify",
                     program=prog.name, insns=len(prog))
    assert res.proven and res.insn_processed >= 90_000
    benchmark.extra_info["insn_processed"] = res.insn_processed


PKT_BLOCK = """
    mov %r4, %r2
    add %r4, {end}
    jgt %r4, %r3, out
    ldxb %r5, [%r2+{o}]
    mov %r6, 0
    mov %r7, 0
p{i}:
    add %r7, %r5
    add %r6, 1
    jlt %r6, 3, p{i}
    ldxh %r5, [%r2+{h}]
    jeq %r5, {i}, pass
    add %r0, %r7
"""
PKT_BLOCK_SLOTS = 12


def packet_program(n_insns: int):
    """About n_insns instructions of XDP-style header parsing: blocks that check `data + k > data_end`,
    read the header bytes the check proved, loop a little and leave early on a 16-bit field's value."""
    from bpfjit.progtypes import XDP_MD_LAYOUT, XDP_MD_SIZE, CtxField, ProgType
    blocks = "".join(PKT_BLOCK.format(i=i, end=16 + 2 * (i % 64), o=i % 16, h=2 * (i % 8))
                     for i in range(max(1, n_insns // PKT_BLOCK_SLOTS)))
    prog = Program.from_asm("    ldxw %r2, [%r1+0]\n    ldxw %r3, [%r1+4]\n    mov %r0, 0\n" + blocks +
                            "out:\n    exit\npass:\n    mov %r0, 2\n    exit\n", name=f"packet{n_insns}")
    ptype = ProgType("xdp_bench", "xdp_md", XDP_MD_SIZE, None, False, False, False, None, "verdict",
                     tuple(CtxField(n, o, s, kind=k) for n, o, s, k in XDP_MD_LAYOUT))
    return prog, ptype


@pytest.mark.parametrize("n", (250, 1000, 4000))
def test_verify_packet(benchmark, n):
    benchmark.group = "verify"
    prog, ptype = packet_program(n)
    res = time_calls(benchmark, lambda: verify(prog, prog_type=ptype), rounds=5, iterations=1, kind="verify",
                     program=prog.name, insns=len(prog))
    assert res.proven
    benchmark.extra_info["insn_processed"] = res.insn_processed
