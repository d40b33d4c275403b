"""Checked-mode memory checks as the JIT plans them per basic block (jit/lower_mem.py): accesses through
one base register are checked together, with a per-access cold copy when the combined check fails. Every
case runs in both engines and must fault with the interpreter's kind, pc, address and size, with every
earlier store done."""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import VM, Config, Program, RuntimeFault


def _run(engine, src, mem, config=None):
    cfg = config or Config()
    vm = VM(Program.from_asm(src, cfg), engine, cfg)
    buf = np.frombuffer(bytearray(mem), dtype=np.uint8).copy()
    try:
        return ("ok", vm.run(buf)), buf
    except RuntimeFault as e:
        start = buf.__array_interface__["data"][0]
        return ("fault", e.kind, e.pc, e.addr - start if e.addr is not None else None, e.size), buf


GROUP_FAULTS_LATE = """
    mov %r2, 7
    stxb [%r1+0], %r2
    stxb [%r1+5], %r2
    stxw [%r1+12], %r2
    stxb [%r1+2], %r2
    mov %r0, 1
    exit
"""


def test_group_fault_reports_the_failing_access_after_earlier_stores(engine):
    result, buf = _run(engine, GROUP_FAULTS_LATE, bytes(14))     # [r1+12] size 4 does not fit in 14 bytes
    assert result == ("fault", "store", 3, 12, 4)
    assert list(buf[:6]) == [7, 0, 0, 0, 0, 7]                       # the stores before it happened
    assert buf[2] == 0                                               # the one after it did not


def test_group_in_bounds_runs_without_fault(engine):
    result, buf = _run(engine, GROUP_FAULTS_LATE, bytes(16))
    assert result == ("ok", 1)
    assert list(buf[:6]) == [7, 0, 7, 0, 0, 7] and list(buf[12:16]) == [7, 0, 0, 0]


def test_stack_store_after_a_fault_in_the_same_block_does_not_happen(engine):
    src = """
        mov %r2, 9
        stxdw [%r10-8], %r2
        ldxw %r3, [%r1+64]
        stxdw [%r10-8], %r3
        ldxdw %r0, [%r10-8]
        exit
    """
    result, _ = _run(engine, src, bytes(16))
    assert result == ("fault", "load", 2, 64, 4)


def test_two_base_registers_fault_at_the_first_failing_access(engine):
    src = """
        mov %r3, %r1
        add %r3, 8
        ldxdw %r4, [%r1+0]
        ldxdw %r5, [%r3+0]
        ldxdw %r6, [%r3+8]
        ldxdw %r7, [%r1+4]
        mov %r0, %r4
        exit
    """
    result, _ = _run(engine, src, bytes(16))
    assert result == ("fault", "load", 4, 16, 8)


def test_base_register_rewritten_inside_a_block_starts_a_new_group(engine):
    src = """
        ldxb %r0, [%r1+0]
        add %r1, 1
        ldxb %r2, [%r1+0]
        add %r1, 100
        ldxb %r3, [%r1+0]
        exit
    """
    result, _ = _run(engine, src, bytes(4))
    assert result == ("fault", "load", 4, 101, 1)


def test_loop_over_mem_faults_at_the_end(engine):
    src = """
        mov %r0, 0
        mov %r3, %r1
    loop:
        ldxb %r4, [%r3+0]
        ldxb %r5, [%r3+1]
        add %r0, %r4
        add %r0, %r5
        add %r3, 2
        ja loop
    """
    result, _ = _run(engine, src, bytes(range(7)))
    assert result == ("fault", "load", 3, 7, 1)


@pytest.mark.parametrize("checked", [True, False])
def test_long_block_of_checked_stores(engine, checked):
    lines = [f"stxb [%r1+{i % 64}], %r{2 + i % 8}" for i in range(300)]
    src = "\n".join([f"mov %r{r}, {r}" for r in range(2, 10)] + lines + ["ldxdw %r0, [%r1+0]", "exit"])
    cfg = Config() if checked else Config(checked=False, insn_limit=None)
    result, buf = _run(engine, src, bytes(64), cfg)
    expect = bytearray(64)
    for i in range(300):
        expect[i % 64] = 2 + i % 8
    assert result == ("ok", int.from_bytes(expect[:8], "little")) and bytes(buf) == bytes(expect)


def test_long_block_faults_in_its_middle(engine):
    lines = [f"stxb [%r1+{i % 64}], %r2" for i in range(150)] + ["stxb [%r1+64], %r2"] + \
        [f"stxb [%r1+{i % 64}], %r3" for i in range(150)]
    src = "\n".join(["mov %r2, 5", "mov %r3, 6"] + lines + ["mov %r0, 0", "exit"])
    result, buf = _run(engine, src, bytes(64))
    assert result == ("fault", "store", 152, 64, 1)
    assert bytes(buf) == bytes([5] * 64)
