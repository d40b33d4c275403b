"""The IR vocabulary shared by everything that emits LLVM IR (lowering, native helpers, map code, the
support module): integer types, constants, function types of the JIT's internal ABIs, branch weights,
access permissions, the packed fault-info word, and declarations of the support module's functions.

A LEAF module: it imports only llvmlite and the state layout, never lowering, compilation or helpers, so
every IR emitter can import it without cycles. Function bodies live elsewhere (support.py, lower*.py).
"""
from __future__ import annotations

from llvmlite import ir

I1, I8, I16, I32, I64 = (ir.IntType(b) for b in (1, 8, 16, 32, 64))
I8P, I64P = I8.as_pointer(), I64.as_pointer()
VOID = ir.VoidType()
M64 = (1 << 64) - 1
HOT, COLD = [2000, 1], [1, 2000]        # branch weights: checks pass, faults are rare
PERM_R, PERM_W, PERM_RW = 1, 2, 3
RET = ir.LiteralStructType([I64] * 6)          # r0..r5 after a subprogram returns
HELPER_FN = ir.FunctionType(I64, [I64] * 6)    # Python callback: (state address, r1..r5) -> r0
NATIVE_FN = ir.FunctionType(I64, [I64P] + [I64] * 5)   # native helper: (state, r1..r5) -> r0
TAIL_ENTRY_FN = ir.FunctionType(I64, [I64P, I64, I64])   # bpf_tail_entry(state, r1, r10) -> r0
# support module (support.py): bpf_check_slow(st, addr, size, info) -> ok; bpf_set_fault(st, info, addr);
# bpf_check_row0(st, addr, size, info, lo0, hi0, perms0) -> ok: row 0 from the arguments, then the table
CHECK_SLOW_FN = ir.FunctionType(I1, [I64P, I64, I64, I64])
CHECK_ROW0_FN = ir.FunctionType(I1, [I64P, I64, I64, I64, I64, I64, I64])
SET_FAULT_FN = ir.FunctionType(VOID, [I64P, I64, I64])
COLD_ADDR_FN = ir.FunctionType(I64, [I64P, I64, I64, I64, I64, I64, I64])
COLD_CC = "preserve_mostcc"   # bpf_cold_addr keeps the caller's registers: no spills around its many calls
SKIP_FAST_ROWS = 0x80    # info flag: rows 0 and 1 were checked inline already, scan from row 2


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v & M64)


def ity(bits: int) -> ir.IntType:
    return ir.IntType(bits)


def declare(module: ir.Module, name: str, fnty: ir.FunctionType) -> ir.Function:
    """`name` declared in module with type fnty (once; an existing declaration is returned)."""
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, fnty, name)


def fault_info(kind_code: int, pc: int, perm: int = 0) -> int:
    """The packed `info` argument of bpf_check_slow / bpf_set_fault: perm | flags | kind << 8 | pc << 16."""
    return perm | (kind_code << 8) | (pc << 16)


def region_check_fn(module: ir.Module) -> ir.Function:
    """bpf_check_slow(st, addr, size, info) -> i1: is [addr, addr+size) inside one region of the run's table
    with the permission in info's low bits? When not, and info carries a fault kind (fault_info), the fault
    is recorded in the state. With SKIP_FAST_ROWS the scan starts at row 2. Compiled once per process
    (support.py, bound before any module links) and declared in each module that calls it; native helpers
    use it (info = perm only) to check pointer arguments."""
    return declare(module, "bpf_check_slow", CHECK_SLOW_FN)


def check_row0_fn(module: ir.Module) -> ir.Function:
    """bpf_check_row0(st, addr, size, info, lo0, hi0, perms0) -> i1: bpf_check_slow with region row 0 given
    as arguments (compiled code's SSA copy; the table's row 0 may be stale in batch loops) and the table
    scanned from row 1. The per-access check of cold paths: one call, no inline compares."""
    return declare(module, "bpf_check_row0", CHECK_ROW0_FN)


def cold_addr_fn(module: ir.Module) -> ir.Function:
    """bpf_cold_addr(st, addr, size, info, lo0, hi0, perms0) -> address to access: addr when the state holds
    no fault and bpf_check_row0 passes; otherwise (recording the fault if it is the first) the address of
    the state's SCRATCH slot. The per-access check of a block's cold copy (lower_mem): no branch."""
    fn = declare(module, "bpf_cold_addr", COLD_ADDR_FN)
    fn.calling_convention = COLD_CC
    return fn


def set_fault_fn(module: ir.Module) -> ir.Function:
    """bpf_set_fault(st, info, addr): record a fault (cold, out of line, so fault sites stay one call)."""
    return declare(module, "bpf_set_fault", SET_FAULT_FN)
