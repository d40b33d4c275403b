"""Verification time (bpfjit.verifier.verify) of generated raw programs with loops: a 1,000-instruction
program (bar: <= 50 ms), the growth with program size (250 .. 4,000 instructions), and a program whose
state exploration processes about 100,000 instructions (bar: <= 5 s). Group `verify`.
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
