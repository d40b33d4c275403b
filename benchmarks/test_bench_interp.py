"""Reference-interpreter speed in instructions per second on loop-heavy programs (issue bar: >= 1 M/s).

The count comes from the interpreter's own meter (`vm.engine.last_count`), so the figure is executed BPF
instructions per wall-clock second of one `VM.run`.
"""
from __future__ import annotations

import pytest

from bpfjit import VM, Config, Program

LOOPS = {
    "alu-loop": """
        mov %r0, 0
        mov %r1, 100000
    loop:
        add %r0, %r1
        xor %r0, 0x55
        rsh %r0, 1
        sub %r1, 1
        jne %r1, 0, loop
        exit
    """,
    "mem-loop": """
        mov %r0, 0
        mov %r3, 0
    loop:
        stxdw [%r10-8], %r3
        ldxdw %r4, [%r10-8]
        add %r0, %r4
        add %r3, 1
        jlt %r3, 50000, loop
        exit
    """,
    "call-loop": """
        mov %r6, 0
        mov %r7, 20000
    loop:
        mov %r1, %r7
        call local f
        add %r6, %r0
        sub %r7, 1
        jne %r7, 0, loop
        mov %r0, %r6
        exit
    f:
        mov %r0, %r1
        and %r0, 7
        exit
    """,
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_interpreter_insns_per_second(benchmark, name):
    vm = VM(Program.from_asm(LOOPS[name]), "interp", Config(insn_limit=None))
    benchmark.group = "interp: instructions per second"
    benchmark.pedantic(vm.run, rounds=3, iterations=1)
    insns = vm.engine.last_count
    per_s = insns / benchmark.stats.stats.min
    benchmark.extra_info.update(insns=insns, insns_per_second=per_s)
    assert per_s > 0
