"""Execution semantics, identical in both engines (every test runs under the `engine` fixture).

ALU widths and edge cases, 32-bit jumps, the instruction meter (`Config(insn_limit=N)`, `last_count`),
memory faults with their exact address and size, memory passed in place, `run_batch` and `bench`, Python
helpers from a custom registry, the local-call register convention and the entry registers.
Single-outcome cases that need no Python live in tests/data/*.data instead.
"""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import ConfigError, VM, Config, Program, RuntimeFault
from bpfjit.helpers import Helper, HelperRegistry, default_registry
from bpfjit.isa import Insn
from bpfjit.vm import thread_stack

M64 = (1 << 64) - 1
INT64_MIN = 1 << 63


def make_vm(text: str, engine: str, config: Config | None = None, **kw) -> VM:
    cfg = config or Config()
    return VM(Program.from_asm(text, cfg), engine, cfg, **kw)


def fault_of(vm: VM, mem=None, **kw) -> RuntimeFault:
    with pytest.raises(RuntimeFault) as ei:
        vm.run(mem, **kw)
    return ei.value


def stack_top(config: Config = Config()) -> int:
    return thread_stack(config.stack_size * config.max_call_depth).end


def binop(op: str, a: int, b: int) -> str:
    """r0 = a, r1 = b, then `op` (which names %r0 and %r1 or an immediate), exit."""
    return f"lddw %r0, {a & M64:#x}\nlddw %r1, {b & M64:#x}\n{op}\nexit\n"


def _ids(cases):
    return [c[0] for c in cases]


# ------------------------------------------------------------------------------------- ALU widths
ZEXT32 = [   # (instruction, r0, r1, expected r0): every 32-bit ALU result has a zero upper half
    ("add32 %r0, 1", 0xDEADBEEF_FFFFFFFE, 0, 0xFFFFFFFF),
    ("add32 %r0, %r1", 0x1_FFFFFFFF, 0x5_00000001, 0),
    ("sub32 %r0, 1", 0x1234_00000000, 0, 0xFFFFFFFF),
    ("sub32 %r0, %r1", 5, 0x1_00000006, 0xFFFFFFFF),
    ("mul32 %r0, %r1", 0x10001, 0x7_00010001, 0x00020001),
    ("mul32 %r0, -1", 2, 0, 0xFFFFFFFE),
    ("or32 %r0, 0", 0xFFFFFFFF_12345678, 0, 0x12345678),
    ("and32 %r0, -1", 0xFFFFFFFF_87654321, 0, 0x87654321),
    ("xor32 %r0, %r1", 0xFFFFFFFF_0000FFFF, 0xFFFFFFFF_FFFF0000, 0xFFFFFFFF),
    ("lsh32 %r0, 4", 0xAAAAAAAA_F0000001, 0, 0x10),
    ("rsh32 %r0, 4", 0xFFFFFFFF_00000010, 0, 1),
    ("arsh32 %r0, 4", 0x80000000, 0, 0xF8000000),
    ("arsh32 %r0, %r1", 0x7_80000000, 31, 0xFFFFFFFF),
    ("neg32 %r0", 0xFFFFFFFF_00000001, 0, 0xFFFFFFFF),
    ("mov32 %r0, %r1", 0, 0x12345678_9ABCDEF0, 0x9ABCDEF0),
    ("mov32 %r0, -1", 0x55, 0, 0xFFFFFFFF),
    ("div32 %r0, %r1", 0x1_00000064, 0x1_0000000A, 10),
    ("mod32 %r0, 7", 0xFFFFFFFF_00000064, 0, 2),
    ("sdiv32 %r0, 2", 0xFFFFFFFF, 0, 0),                 # -1 / 2 truncates to 0
    ("smod32 %r0, %r1", 0xFFFFFFF9, 0x1_00000002, 0xFFFFFFFF),  # -7 % 2 = -1
    ("movsx832 %r0, %r1", M64, 0xFF, 0xFFFFFFFF),
    ("le32 %r0", 0x11223344_55667788, 0, 0x55667788),
    ("be16 %r0", 0x11223344_55667788, 0, 0x8877),
]


@pytest.mark.parametrize("op, a, b, want", ZEXT32, ids=_ids(ZEXT32))
def test_32bit_results_are_zero_extended(run_asm, op, a, b, want):
    assert run_asm(binop(op, a, b)) == want


SHIFTS = [   # shift amounts are masked to 63 (64-bit) / 31 (32-bit), immediate and register alike
    ("lsh %r0, 65", 1, 0, 2),
    ("lsh %r0, -1", 1, 0, INT64_MIN),
    ("lsh %r0, %r1", 3, 0xFFFFFFFF_FFFFFF41, 6),
    ("lsh32 %r0, 33", 1, 0, 2),
    ("lsh32 %r0, %r1", 1, 0x1_00000020, 1),
    ("rsh %r0, 64", 0x1234, 0, 0x1234),
    ("rsh %r0, %r1", 4, 0x41, 2),
    ("rsh32 %r0, -1", 0x80000000, 0, 1),
    ("rsh32 %r0, %r1", 0xFFFFFFFF_00000004, 0xFF_00000021, 2),
    ("arsh %r0, 64", INT64_MIN, 0, INT64_MIN),
    ("arsh %r0, %r1", INT64_MIN, 0x7F, M64),
    ("arsh32 %r0, %r1", 0x1_80000000, 32, 0x80000000),
    ("arsh32 %r0, 63", 0x80000000, 0, 0xFFFFFFFF),
]


@pytest.mark.parametrize("op, a, b, want", SHIFTS, ids=_ids(SHIFTS))
def test_shift_amounts_are_masked(run_asm, op, a, b, want):
    assert run_asm(binop(op, a, b)) == want


INT_MIN = [   # INT_MIN / -1 wraps to INT_MIN, INT_MIN % -1 is 0, at both widths and with imm or reg
    ("sdiv %r0, -1", INT64_MIN, 0, INT64_MIN),
    ("sdiv %r0, %r1", INT64_MIN, M64, INT64_MIN),
    ("smod %r0, -1", INT64_MIN, 0, 0),
    ("smod %r0, %r1", INT64_MIN, M64, 0),
    ("sdiv32 %r0, -1", 0xFFFFFFFF_80000000, 0, 0x80000000),
    ("sdiv32 %r0, %r1", 0x80000000, 0x5_FFFFFFFF, 0x80000000),
    ("smod32 %r0, -1", 0x80000000, 0, 0),
    ("smod32 %r0, %r1", 0x3_80000000, 0xFFFFFFFF, 0),
]


@pytest.mark.parametrize("op, a, b, want", INT_MIN, ids=_ids(INT_MIN))
def test_int_min_by_minus_one(run_asm, op, a, b, want):
    assert run_asm(binop(op, a, b)) == want


SIGNED = [   # signed division truncates toward zero; the remainder takes the sign of the dividend
    ("sdiv %r0, %r1", -13, 3, -4),
    ("sdiv %r0, %r1", 13, -3, -4),
    ("sdiv %r0, %r1", -13, -3, 4),
    ("smod %r0, %r1", -13, 3, -1),
    ("smod %r0, %r1", 13, -3, 1),
    ("smod %r0, %r1", -13, -3, -1),
    ("smod %r0, 5", -1, 0, -1),
    ("sdiv32 %r0, %r1", -13, 3, -4 & 0xFFFFFFFF),
    ("smod32 %r0, %r1", -13, 3, -1 & 0xFFFFFFFF),
    ("smod32 %r0, -3", 13, 0, 1),
    ("smod32 %r0, %r1", -13, -3, -1 & 0xFFFFFFFF),
]


@pytest.mark.parametrize("op, a, b, want", SIGNED, ids=[f"{c[0]}:{c[1]},{c[2]}" for c in SIGNED])
def test_signed_division_truncates(run_asm, op, a, b, want):
    assert run_asm(binop(op, a, b)) == want & M64


BY_ZERO = [   # division by zero gives 0; modulo by zero leaves dst (its low half for 32-bit ops)
    ("div %r0, 0", 0),
    ("div %r0, %r1", 0),
    ("sdiv %r0, 0", 0),
    ("sdiv %r0, %r1", 0),
    ("div32 %r0, %r1", 0),
    ("sdiv32 %r0, 0", 0),
    ("mod %r0, %r1", 0xFEDCBA98_76543210),
    ("mod %r0, 0", 0xFEDCBA98_76543210),
    ("smod %r0, %r1", 0xFEDCBA98_76543210),
    ("smod %r0, 0", 0xFEDCBA98_76543210),
    ("mod32 %r0, %r1", 0x76543210),
    ("smod32 %r0, 0", 0x76543210),
]


@pytest.mark.parametrize("op, want", BY_ZERO, ids=_ids(BY_ZERO))
def test_division_and_modulo_by_zero(run_asm, op, want):
    # r1 = 0x1_00000000 is zero only in its low half: a 32-bit divisor of 0, a 64-bit one of 2^32
    divisor = 0x1_00000000 if "32" in op else 0
    assert run_asm(binop(op, 0xFEDCBA98_76543210, divisor)) == want


def test_64bit_divisor_uses_all_bits(run_asm):
    assert run_asm(binop("div %r0, %r1", 0xFEDCBA98_76543210, 0x1_00000000)) == 0xFEDCBA98


SIGN_EXTENDED_IMM = [   # 64-bit ALU immediates are sign-extended from 32 bits
    ("mov %r0, -1", 0, M64),
    ("add %r0, -1", 0, M64),
    ("sub %r0, -1", 0, 1),
    ("mul %r0, -1", 2, M64 - 1),
    ("and %r0, 0x80000000", M64, 0xFFFFFFFF_80000000),
    ("or %r0, 0x80000000", 0, 0xFFFFFFFF_80000000),
    ("xor %r0, -1", 0xFFFFFFFF, 0xFFFFFFFF_00000000),
    ("mov32 %r0, -1", 0, 0xFFFFFFFF),
    ("add32 %r0, -1", 0, 0xFFFFFFFF),
]


@pytest.mark.parametrize("op, a, want", SIGN_EXTENDED_IMM, ids=_ids(SIGN_EXTENDED_IMM))
def test_64bit_immediates_are_sign_extended(run_asm, op, a, want):
    assert run_asm(binop(op, a, 0)) == want


def test_st_immediate_is_sign_extended(run_asm):
    assert run_asm("stdw [%r10-8], -2\nldxdw %r0, [%r10-8]\nexit") == M64 - 1


# --------------------------------------------------------------------------------------- jumps
JUMPS = [   # (jump, r1, r2, taken): 32-bit compares look at the low halves only
    ("jeq32 %r1, 5", 0x1_00000005, 0, True),
    ("jeq %r1, 5", 0x1_00000005, 0, False),
    ("jne32 %r1, 0", 0xFFFFFFFF_00000000, 0, False),
    ("jgt32 %r1, 0", 0x1_00000000, 0, False),
    ("jgt %r1, -1", 0xFFFFFFFF, 0, False),               # 64-bit: imm is 0xffffffffffffffff
    ("jgt32 %r1, %r2", 0x2, 0xFF_00000001, True),
    ("jge32 %r1, %r2", 0x1_00000000, 0x1, False),
    ("jlt32 %r1, %r2", 0x2_00000001, 0x1_00000002, True),
    ("jlt %r1, %r2", 0x2_00000001, 0x1_00000002, False),
    ("jle32 %r1, 0", 0xABCD_00000000, 0, True),
    ("jsgt32 %r1, 0", 0x80000000, 0, False),
    ("jsgt %r1, 0", 0x80000000, 0, True),
    ("jsge32 %r1, -1", 0xFFFFFFFF, 0, True),
    ("jsge %r1, -1", 0xFFFFFFFF, 0, True),
    ("jslt32 %r1, 0", 0x7FFFFFFF_FFFFFFFF, 0, True),
    ("jslt %r1, 0", 0x7FFFFFFF_FFFFFFFF, 0, False),
    ("jsle32 %r1, %r2", 0x1_00000001, 0x2_FFFFFFFF, False),
    ("jset32 %r1, %r2", 0x1_00000000, 0x1_00000000, False),
    ("jset %r1, %r2", 0x1_00000000, 0x1_00000000, True),
    ("jne32 %r1, %r2", 0x1_00000007, 0x2_00000007, False),
]


@pytest.mark.parametrize("jump, a, b, taken", JUMPS, ids=_ids(JUMPS))
def test_jump_compares(run_asm, jump, a, b, taken):
    text = f"lddw %r1, {a:#x}\nlddw %r2, {b:#x}\nmov %r0, 1\n{jump}, +1\nmov %r0, 0\nexit"
    assert run_asm(text) == int(taken)


def test_gotol_beyond_16_bit_offsets(engine):
    filler = 40_000                                         # more than an off16 can jump over
    insns = [Insn(0xB7, 0, 0, 0, 1),                        # 0: mov %r0, 1
             Insn(0x06, 0, 0, 0, filler + 2),               # 1: ja32 -> 4 + filler
             Insn(0x07, 0, 0, 0, 10),                       # 2: add %r0, 10
             Insn(0x95, 0, 0, 0, 0)]                        # 3: exit
    insns += [Insn(0xB7, 0, 0, 0, 99)] * filler             # never executed
    insns += [Insn(0x07, 0, 0, 0, 100),                     # add %r0, 100
              Insn(0x06, 0, 0, 0, -(filler + 4))]           # ja32 -> 2
    vm = VM(Program.from_insns(insns), engine)
    assert vm.run() == 111
    assert vm.engine.last_count == 6


# ---------------------------------------------------------------------------- instruction meter
LOOP = "mov %r0, 0\nloop:\nadd %r0, 1\nja loop\n"           # blocks: [0] costs 1, [1, 2] cost 2


@pytest.mark.parametrize("limit, pc", [(1, 1), (2, 1), (1000, 1), (1001, 1)])
def test_infinite_loop_hits_the_limit_at_the_block_leader(engine, limit, pc):
    err = fault_of(make_vm(LOOP, engine, Config(safety="checked", insn_limit=limit)))
    assert (err.kind, err.pc, err.addr, err.size) == ("insn_limit", pc, None, None)


def test_limit_inside_a_local_call(engine):
    vm = make_vm("mov %r0, 0\ncall local f\nexit\nf:\nadd %r0, 1\nja f", engine, Config(safety="checked", insn_limit=50))
    assert fault_of(vm).key() == ("insn_limit", 3, None, None)


STRAIGHT = "mov %r0, 0\n" + "add %r0, 1\n" * 8 + "exit\n"   # 10 instructions, one block


def test_program_of_exactly_the_limit_runs(engine):
    vm = make_vm(STRAIGHT, engine, Config(safety="checked", insn_limit=10))
    assert vm.run() == 8
    assert vm.engine.last_count == 10


def test_block_is_charged_on_entry(engine):
    # one instruction short: the whole block is refused before its first instruction runs
    assert fault_of(make_vm(STRAIGHT, engine, Config(safety="checked", insn_limit=9))).key() == ("insn_limit", 0, None, None)


COUNTED = """
mov %r0, 0
mov %r1, 5
loop:
add %r0, 2
sub %r1, 1
jne %r1, 0, loop
exit
"""   # 2 + 5 * 3 + 1 = 18 instructions


@pytest.mark.parametrize("limit", [18, 19, 10_000_000])
def test_last_count_is_the_number_of_executed_instructions(engine, limit):
    vm = make_vm(COUNTED, engine, Config(safety="checked", insn_limit=limit))
    assert vm.run() == 10
    assert vm.engine.last_count == 18


# The limit is compared at meter points only (program.meter_points: the entry, local-call targets and
# backward-jump targets); other blocks just add their cost, so a run may pass the limit by one acyclic stretch.
def test_meter_compares_at_loop_heads(engine):
    # limit 16: the loop head (pc 2) is refused on its fifth entry (14 + 3 > 16)
    assert fault_of(make_vm(COUNTED, engine, Config(safety="checked", insn_limit=16))).key() == ("insn_limit", 2, None, None)


def test_block_after_the_last_meter_point_is_charged_not_checked(engine):
    # limit 17: the last loop-head check sees 17; the exit block (pc 5) takes the count to 18 unchecked
    vm = make_vm(COUNTED, engine, Config(safety="checked", insn_limit=17))
    assert vm.run() == 10
    assert vm.engine.last_count == 18


def test_acyclic_program_is_checked_at_entry_only(engine):
    text = "mov %r0, 1\njeq %r0, 1, +0\nadd %r0, 1\nja +0\nadd %r0, 1\nexit"    # blocks of 2, 2, 2
    vm = make_vm(text, engine, Config(safety="checked", insn_limit=2))
    assert vm.run() == 3
    assert vm.engine.last_count == 6
    assert fault_of(make_vm(text, engine, Config(safety="checked", insn_limit=1))).key() == ("insn_limit", 0, None, None)


@pytest.mark.parametrize("text, count", [
    ("lddw %r0, 0x100000000\nexit", 2),                                     # lddw counts once
    ("mov %r0, 0\ncall local f\nadd %r0, 1\nexit\nf:\nmov %r0, 5\nexit", 6),
    ("mov %r1, 3\nmov %r0, 1\njgt %r1, 2, +1\nmov %r0, 2\nexit", 4),      # the skipped slot is not counted
    ("mov %r2, 5\ncall %r2\nmov %r0, 0\nexit", 4),
], ids=["lddw", "local-call", "branch", "callx"])
def test_last_count_of_shapes(engine, text, count):
    vm = make_vm(text, engine, Config(safety="checked"))
    vm.run()
    assert vm.engine.last_count == count


def test_proven_programs_run_without_the_meter(engine):
    """Config(safety="auto") (the default) runs a program the verifier proves without runtime checks or
    meter in the JIT (last_count is None there); the interpreter still counts. Results are the same."""
    vm = make_vm(COUNTED, engine)
    assert vm.safety == "verified" and vm.verifier_error is None
    assert vm.run() == 10
    assert vm.engine.last_count == (18 if engine == "interp" else None)
    unproven = make_vm("ldxb %r0, [%r1]\nexit", engine)        # r1's size is unknown without mem_size
    assert unproven.safety == "checked" and "mem_size=0" in str(unproven.verifier_error)
    assert unproven.run(b"\x07") == 7 and unproven.engine.last_count == 2


def test_insn_limit_zero_is_refused():
    with pytest.raises(ConfigError, match="insn_limit"):
        Config(insn_limit=0)


def test_meter_restarts_for_every_run_of_bench_and_batch(engine):
    cfg = Config(safety="checked", insn_limit=18)                              # exactly one run of COUNTED
    vm = make_vm(COUNTED, engine, cfg)
    assert vm.bench(np.zeros(8, dtype=np.uint8), n=5) == 10
    assert vm.run_batch(np.zeros((3, 4), dtype=np.uint8)).tolist() == [10, 10, 10]


def test_last_count_after_a_fault(engine):
    vm = make_vm(LOOP, engine, Config(safety="checked", insn_limit=1000))
    assert vm.engine.last_count == 0
    fault_of(vm)
    assert vm.engine.last_count == 999                     # 1 + 2 * 499 charged before the refused block


def test_vm_runs_again_after_a_fault(engine):
    vm = make_vm("jeq %r2, 0, +1\nja -1\nmov %r0, 3\nexit", engine, Config(safety="checked", insn_limit=100))
    assert fault_of(vm, b"\x01").kind == "insn_limit"
    assert vm.run() == 3
    assert vm.engine.last_count == 3


# ------------------------------------------------------------------------------- memory faults
MEM_FAULTS = [   # (program, kind, pc, offset from the mem start, size)
    ("mov %r0, 0\nldxw %r0, [%r1+6]\nexit", "load", 1, 6, 4),
    ("ldxsh %r0, [%r1-1]\nexit", "load", 0, -1, 2),
    ("stxdw [%r1-8], %r1\nexit", "store", 0, -8, 8),
    ("stb [%r1+8], 1\nexit", "store", 0, 8, 1),
    ("mov %r2, 1\nlock add32 [%r1+8], %r2\nexit", "atomic", 1, 8, 4),
    ("mov %r0, 0\nlock cmpxchg [%r1+4], %r1\nexit", "atomic", 1, 4, 8),
]


@pytest.mark.parametrize("text, kind, pc, off, size", MEM_FAULTS, ids=[f"{c[1]}{c[3]:+d}" for c in MEM_FAULTS])
def test_memory_fault_reports_address_and_size(engine, text, kind, pc, off, size):
    mem = np.zeros(8, dtype=np.uint8)
    err = fault_of(make_vm(text, engine), mem)
    assert err.key() == (kind, pc, mem.ctypes.data + off, size)


@pytest.mark.parametrize("text, kind, off, size", [
    ("ldxdw %r0, [%r10]\nexit", "load", 0, 8),
    ("stw [%r10-2], 1\nexit", "store", -2, 4),
    ("mov %r1, 1\nstxb [%r10-4097], %r1\nexit", "store", -4097, 1),
    ("mov %r1, 1\nlock xchg [%r10+8], %r1\nexit", "atomic", 8, 8),
], ids=["load-top", "store-straddle", "store-bottom", "atomic-above"])
def test_stack_fault_reports_address_and_size(engine, text, kind, off, size):
    err = fault_of(make_vm(text, engine))
    assert (err.kind, err.addr, err.size) == (kind, stack_top() + off, size)


def test_fault_address_wraps_around(engine):
    err = fault_of(make_vm("ldxdw %r0, [%r1-1]\nexit", engine))        # r1 = 0 without mem
    assert err.key() == ("load", 0, M64, 8)


def test_memory_fault_is_identical_in_both_engines():
    mem = np.zeros(16, dtype=np.uint8)
    text = "mov %r0, 0\ncall local f\nexit\nf:\nldxw %r0, [%r1+14]\nexit"
    keys = {engine: fault_of(make_vm(text, engine), mem).key() for engine in ("interp", "jit")}
    assert keys["interp"] == keys["jit"] == ("load", 3, mem.ctypes.data + 14, 4)


def test_readonly_memory(engine):
    mem = np.arange(8, dtype=np.uint8)
    assert make_vm("ldxb %r0, [%r1+7]\nexit", engine).run(mem, readonly=True) == 7
    store = fault_of(make_vm("stb [%r1], 1\nexit", engine), mem, readonly=True)
    atomic = fault_of(make_vm("lock add32 [%r1], %r2\nexit", engine), mem, readonly=True)
    assert store.key() == ("store", 0, mem.ctypes.data, 1)
    assert atomic.key() == ("atomic", 0, mem.ctypes.data, 4)
    assert mem.tolist() == list(range(8))


# --------------------------------------------------------------------- legacy packet loads (ABS/IND)
# (in-bounds and out-of-bounds cases are data files: tests/data/ldabs*.data, ldind*.data)
def test_packet_loads_read_the_run_memory(engine):
    vm = make_vm("ldabsh 0\nmov %r6, %r0\nmov %r3, 2\nldindb %r3, 1\nlsh %r6, 8\nor %r0, %r6\nexit", engine)
    assert vm.run(b"\x12\x34\x56\x78") == 0x123478
    assert vm.run(b"\xab\xcd\xef\x01") == 0xABCD01


# ---------------------------------------------------------------------------- memory in place
def test_numpy_memory_is_written_in_place(engine):
    mem = np.zeros(16, dtype=np.uint8)
    vm = make_vm("stw [%r1+8], 0x11223344\nstb [%r1], 7\nmov %r0, %r2\nexit", engine)
    assert vm.run(mem) == 16
    assert mem[0] == 7 and bytes(mem[8:12]) == b"\x44\x33\x22\x11"
    assert vm.last_mem is not None and vm.last_mem.ctypes.data == mem.ctypes.data


def test_numpy_memory_of_another_dtype(engine):
    mem = np.array([1, 2], dtype=np.uint32)
    vm = make_vm("ldxw %r0, [%r1+4]\nadd %r0, 40\nstxw [%r1], %r0\nmov %r0, %r2\nexit", engine)
    assert vm.run(mem) == 8
    assert mem.tolist() == [42, 2]


def test_non_writeable_numpy_memory_is_read_only(engine):
    mem = np.arange(8, dtype=np.uint8)
    mem.flags.writeable = False
    assert make_vm("ldxb %r0, [%r1+5]\nexit", engine).run(mem) == 5
    err = fault_of(make_vm("stb [%r1+2], 9\nexit", engine), mem)
    assert err.key() == ("store", 0, mem.ctypes.data + 2, 1)
    assert mem.tolist() == list(range(8))


def test_array_made_read_only_is_never_written(engine):
    # the same array object again (the JIT caches its placement): its permission is read anew
    mem = np.zeros(8, dtype=np.uint8)
    vm = make_vm("stb [%r1], 1\nmov %r0, %r2\nexit", engine)
    assert vm.run(mem) == 8 and mem[0] == 1
    mem[0] = 0
    mem.flags.writeable = False
    assert fault_of(vm, mem).key() == ("store", 0, mem.ctypes.data, 1)
    assert mem[0] == 0


def test_bytes_are_copied_writable_buffers_used_in_place(engine):
    """bytes are immutable: the program runs on a private copy (last_mem shows it); bytearrays and
    writable memoryviews are used in place, so stores are visible to the caller, as with numpy arrays."""
    vm = make_vm("stb [%r1], 9\nldxw %r0, [%r1]\nexit", engine)
    data = b"\x01\x02\x03\x04"
    assert vm.run(data) == 0x04030209
    assert data == b"\x01\x02\x03\x04" and vm.last_mem.tobytes() == b"\x09\x02\x03\x04"
    for buf in (bytearray(b"\x01\x02\x03\x04"), memoryview(bytearray(b"\x01\x02\x03\x04"))):
        assert vm.run(buf) == 0x04030209
        assert bytes(buf) == b"\x09\x02\x03\x04"
    ro = memoryview(b"\x01\x02\x03\x04")
    assert fault_of(vm, ro).kind == "store"


# ----------------------------------------------------------------------------- run_batch / bench
def test_run_batch_2d(engine):
    recs = np.arange(32, dtype=np.uint8).reshape(4, 8)
    out = make_vm("ldxb %r0, [%r1+1]\nadd %r0, %r2\nexit", engine).run_batch(recs)
    assert out.dtype == np.uint64
    assert out.tolist() == [1 + 8, 9 + 8, 17 + 8, 25 + 8]


def test_run_batch_structured_records_in_place(engine):
    recs = np.zeros(3, dtype=[("a", "<u4"), ("b", "<u4")])
    recs["a"] = [1, 2, 3]
    recs["b"] = [10, 20, 30]
    vm = make_vm("ldxw %r0, [%r1]\nldxw %r3, [%r1+4]\nadd %r0, %r3\nstxw [%r1+4], %r0\nexit", engine)
    assert vm.run_batch(recs).tolist() == [11, 22, 33]
    assert recs["b"].tolist() == [11, 22, 33]


def test_run_batch_fault_names_the_record(engine):
    recs = np.array([[1], [3], [2], [2]], dtype=np.uint8)
    vm = make_vm("ldxb %r0, [%r1]\njne %r0, 2, +1\nldxb %r0, [%r1+100]\nexit", engine)
    with pytest.raises(RuntimeFault) as ei:
        vm.run_batch(recs)
    assert (ei.value.kind, ei.value.pc, ei.value.record) == ("load", 2, 2)
    assert ei.value.addr == recs[2].ctypes.data + 100


def test_run_batch_packet_loads_per_record(engine):
    # each record holds the offset of the byte to read; an offset past the record gives r0 = 0 for it alone
    recs = np.array([[1, 0xAA, 0xBB, 0xCC], [9, 0, 0, 0], [3, 1, 2, 0xDD]], dtype=np.uint8)
    vm = make_vm("ldxb %r3, [%r1]\nldindb %r3, 0\nexit", engine)
    assert vm.run_batch(recs).tolist() == [0xAA, 0, 0xDD]


def test_run_batch_empty(engine):
    out = make_vm("mov %r0, 1\nexit", engine).run_batch(np.zeros((0, 8), dtype=np.uint8))
    assert out.shape == (0,)


def test_bench_runs_n_times_on_the_same_memory(engine):
    mem = np.zeros(8, dtype=np.uint8)
    vm = make_vm("ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\nexit", engine)
    assert vm.bench(mem, n=50) == 50
    assert int(mem.view(np.uint64)[0]) == 50


def test_bench_without_memory(engine):
    assert make_vm("mov %r0, %r2\nadd %r0, 3\nexit", engine).bench(None, n=5) == 3


def test_bench_stops_at_a_fault(engine):
    mem = np.zeros(8, dtype=np.uint8)
    vm = make_vm("ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\njne %r0, 3, +1\nldxb %r0, [%r1+8]\nexit",
                 engine)
    with pytest.raises(RuntimeFault) as ei:
        vm.bench(mem, n=10)
    assert ei.value.key() == ("load", 4, mem.ctypes.data + 8, 1)
    assert int(mem.view(np.uint64)[0]) == 3


# ----------------------------------------------------------------------------------- helpers
def _registry() -> HelperRegistry:
    reg = HelperRegistry()

    @reg.helper(200, args=("ptr_to_mem", "const_size"))
    def sum_bytes(ctx, r1, r2, r3, r4, r5):
        data = ctx.aspace.read_bytes(r1, r2)
        return -14 if data is None else sum(data)

    @reg.helper(201, args=("ptr_to_mem",))
    def poke(ctx, r1, r2, r3, r4, r5):
        return 0 if ctx.aspace.write_bytes(r1, b"hi") else -14

    @reg.helper(202)
    def broken(ctx, r1, r2, r3, r4, r5):
        raise ValueError("helper failed on purpose")

    @reg.helper(203)
    def load_u64(ctx, r1, r2, r3, r4, r5):
        return ctx.aspace.load(r1, 8)           # raises RuntimeFault("load", -1, ...) when out of bounds

    @reg.helper(204)
    def wide(ctx, r1, r2, r3, r4, r5):
        return (1 << 64) + 5                    # wider than 64 bits: r0 keeps the low 64

    return reg


def test_python_helper_reads_memory(engine):
    vm = make_vm("call 200\nexit", engine, helpers=_registry())
    assert vm.run(bytes(range(1, 9))) == 36
    assert vm.run(None) == 0                                 # r2 = 0: nothing to read


def test_python_helper_reads_the_stack(engine):
    text = "stdw [%r10-8], 0x01020304\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 200\nexit"
    assert make_vm(text, engine, helpers=_registry()).run() == 10


def test_python_helper_bad_pointer(engine):
    text = "mov %r1, 16\nmov %r2, 4\ncall 200\nexit"
    assert make_vm(text, engine, helpers=_registry()).run() == (-14) & M64


def test_python_helper_writes_memory(engine):
    mem = np.zeros(4, dtype=np.uint8)
    assert make_vm("add %r1, 1\ncall 201\nexit", engine, helpers=_registry()).run(mem) == 0
    assert bytes(mem) == b"\x00hi\x00"


def test_python_helper_result_is_truncated_to_64_bits(engine):
    assert make_vm("call 204\nexit", engine, helpers=_registry()).run() == 5


def test_python_helper_gets_registers_as_unsigned(engine):
    seen = []
    reg = HelperRegistry([Helper(210, "record", lambda ctx, *a: seen.append(a) or 0)])
    make_vm("mov %r1, -1\nmov %r2, 2\nmov32 %r3, -1\nmov %r4, 4\nmov %r5, 5\ncall 210\nexit", engine,
            helpers=reg).run()
    assert seen == [(M64, 2, 0xFFFFFFFF, 4, 5)]


def test_helpers_leave_r1_to_r5(engine):
    text = ("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 204\n"
            "mov %r0, %r1\nlsh %r0, 4\nor %r0, %r2\nlsh %r0, 4\nor %r0, %r3\nlsh %r0, 4\nor %r0, %r4\n"
            "lsh %r0, 4\nor %r0, %r5\nexit")
    assert make_vm(text, engine, helpers=_registry()).run() == 0x12345


def test_raising_helper_faults_at_the_call(engine):
    vm = make_vm("mov %r0, 0\nmov %r1, 1\ncall 202\nexit", engine, helpers=_registry())
    err = fault_of(vm)
    assert err.key() == ("helper", 2, None, None)
    assert isinstance(err.__cause__, ValueError)


def test_raising_helper_inside_a_local_call(engine):
    vm = make_vm("call local f\nexit\nf:\nmov %r0, 0\ncall 202\nexit", engine, helpers=_registry())
    assert fault_of(vm).key() == ("helper", 3, None, None)


def test_raising_helper_through_callx(engine):
    vm = make_vm("mov %r7, 202\ncall %r7\nexit", engine, helpers=_registry())
    assert fault_of(vm).key() == ("helper", 1, None, None)


def test_helper_memory_fault_is_reported_at_the_call(engine):
    vm = make_vm("mov %r1, 24\ncall 203\nexit", engine, helpers=_registry())
    assert fault_of(vm).key() == ("load", 1, 24, 8)


@pytest.mark.parametrize("value", [1 << 31, M64, (1 << 32) + 202], ids=["2^31", "-1", "2^32+202"])
def test_callx_id_outside_the_helper_range(engine, value):
    vm = make_vm(f"lddw %r1, {value:#x}\ncall %r1\nexit", engine, helpers=_registry())
    assert fault_of(vm).key() == ("bad_call", 2, None, None)


def test_vm_usable_after_a_helper_fault(engine):
    vm = make_vm("jeq %r2, 0, +1\ncall 202\nmov %r0, 1\nexit", engine, helpers=_registry())
    assert fault_of(vm, b"\x00").kind == "helper"
    assert vm.run() == 1


# ------------------------------------------------------------------------------- local calls
CALL_REGS = """
mov %r2, 2
mov %r3, 3
mov %r4, 4
mov %r5, 5
mov %r6, 6
mov %r7, 7
mov %r8, 8
mov %r9, 9
stxdw [%r10-8], %r1
call local f
stxdw [%r10-16], %r0
ldxdw %r0, [%r10-8]
stxdw [%r0+8], %r1
stxdw [%r0+16], %r2
stxdw [%r0+24], %r3
stxdw [%r0+32], %r4
stxdw [%r0+40], %r5
stxdw [%r0+48], %r6
stxdw [%r0+56], %r7
stxdw [%r0+64], %r8
stxdw [%r0+72], %r9
stxdw [%r0+80], %r10
ldxdw %r1, [%r10-16]
stxdw [%r0], %r1
mov %r0, 0
exit
f:
mov %r0, 100
mov %r1, 11
mov %r2, 22
mov %r3, 33
mov %r4, 44
mov %r5, 55
mov %r6, 66
mov %r7, 77
mov %r8, 88
mov %r9, 99
exit
"""


def test_registers_after_a_local_call(engine):
    mem = np.zeros(11, dtype=np.uint64)
    make_vm(CALL_REGS, engine).run(mem)                     # r1 = mem, saved at [r10-8] for the dump
    r = mem.tolist()
    assert r[0] == 100                                      # r0: the callee's result
    assert r[1:6] == [11, 22, 33, 44, 55]                   # r1-r5: as the callee left them
    assert r[6:10] == [6, 7, 8, 9]                          # r6-r9: restored
    assert r[10] == stack_top()                             # r10: the caller's frame again


def test_local_call_to_the_entry_point(engine):
    # main calls itself (target 0) until r0 > 3: 4 frames, each returning r0 unchanged
    assert make_vm("add %r0, 1\njgt %r0, 3, +1\ncall local -3\nexit", engine).run() == 4


@pytest.mark.parametrize("depth, calls, fault_pc", [(1, 1, 0), (2, 1, None), (2, 2, 2), (3, 2, None)])
def test_max_call_depth_is_configurable(engine, depth, calls, fault_pc):
    # `calls` nested calls need calls + 1 frames
    text = "call local f1\nexit\nf1:\n" + ("call local f2\nexit\nf2:\n" if calls == 2 else "") + \
        "mov %r0, 1\nexit"
    vm = make_vm(text, engine, Config(max_call_depth=depth))
    if fault_pc is None:
        assert vm.run() == 1
    else:
        assert fault_of(vm).key() == ("call_depth", fault_pc, None, None)


def test_callee_sees_the_callers_registers(engine):
    text = "mov %r3, 30\nmov %r6, 60\ncall local f\nexit\nf:\nmov %r0, %r3\nadd %r0, %r6\nexit"
    assert make_vm(text, engine).run() == 90


# --------------------------------------------------------------------------- entry registers
DUMP = "".join(f"stxdw [%r1+{8 * i}], %r{i}\n" for i in range(11)) + "mov %r0, 0\nexit\n"


def test_entry_registers_with_memory(engine):
    mem = np.full(11, 0xAA, dtype=np.uint64)
    make_vm(DUMP, engine).run(mem)
    r = mem.tolist()
    assert r[1] == mem.ctypes.data and r[2] == 88
    assert r[10] == stack_top()
    assert r[0] == 0 and r[3:10] == [0] * 7


@pytest.mark.parametrize("mem", ["none", "empty-bytes", "empty-array"])
def test_entry_registers_without_memory(engine, mem):
    value = {"none": None, "empty-bytes": b"", "empty-array": np.zeros(0, dtype=np.uint8)}[mem]
    assert make_vm("mov %r0, %r1\nor %r0, %r2\nexit", engine).run(value) == 0


def test_r10_is_the_same_in_both_engines_and_every_run():
    values = {make_vm("mov %r0, %r10\nexit", engine).run() for engine in ("interp", "jit") for _ in range(2)}
    assert values == {stack_top()}


def test_r10_follows_the_stack_configuration(engine):
    cfg = Config(stack_size=256, max_call_depth=4)
    assert make_vm("mov %r0, %r10\nexit", engine, cfg).run() == stack_top(cfg)
    err = fault_of(make_vm("stb [%r10-1025], 1\nexit", engine, cfg))
    assert (err.kind, err.addr) == ("store", stack_top(cfg) - 1025)


# ----------------------------------------------------------------------- run_batch isolation (fuzz finds)
def test_batch_record_cannot_reach_its_neighbour(engine):
    """Each run of run_batch sees only its own record: reading the previous record faults at record 1
    (the JIT used to keep record 0 in its region table for the whole batch)."""
    recs = np.arange(48, dtype=np.uint8).reshape(3, 16)
    vm = make_vm("ldxb %r2, [%r1]\njeq %r2, 0, +1\nldxb %r0, [%r1-16]\nexit", engine)
    with pytest.raises(RuntimeFault) as ei:
        vm.run_batch(recs)
    assert (ei.value.kind, ei.value.pc, ei.value.record) == ("load", 2, 1)


def test_python_helper_sees_the_record_being_run(engine):
    """A Python helper reading r1's memory during run_batch reads the current record in both engines."""
    reg = HelperRegistry(default_registry())
    reg.register(Helper(300, "first_byte", lambda ctx, r1, *a: ctx.aspace.read_bytes(r1, 1)[0]))
    recs = np.arange(48, dtype=np.uint8).reshape(3, 16)
    vm = make_vm("call 300\nexit", engine, helpers=reg)
    assert vm.run_batch(recs).tolist() == [0, 16, 32]
