"""The JIT's support module: out-of-line runtime functions every compiled program may call (the region
table scans `bpf_check_slow` / `bpf_check_row0` and `bpf_set_fault`), emitted here, compiled once per
process (or loaded as object code from the disk cache) and bound by name with llvm.add_symbol before any
module links (target.before_link), so that
program modules only declare them (irlib.region_check_fn ...). Program code does not live here.
"""
from __future__ import annotations

import hashlib
import threading

import llvmlite
import llvmlite.binding as llvm
from llvmlite import ir

from . import diskcache, target
from . import state as S
from .irlib import (CHECK_ROW0_FN, CHECK_SLOW_FN, COLD_ADDR_FN, COLD_CC, I1, I64, I64P, SET_FAULT_FN, SKIP_FAST_ROWS, c64)

_LOCK = threading.Lock()
_ENGINE = None
EXPORTS = ("bpf_check_slow", "bpf_check_row0", "bpf_cold_addr", "bpf_set_fault")


def store_fault(b: ir.IRBuilder, st, info, addr, size) -> None:
    """Write (kind, pc, addr, size) from a packed info word into the state block."""
    b.store(b.and_(b.lshr(info, c64(8)), c64(0xFF)), b.gep(st, [c64(S.F_KIND)]))
    b.store(b.lshr(info, c64(16)), b.gep(st, [c64(S.F_PC)]))
    b.store(addr, b.gep(st, [c64(S.F_ADDR)]))
    b.store(size, b.gep(st, [c64(S.F_SIZE)]))


def _row_ok(b, addr, end, lo, hi, pm, perm):
    return b.and_(b.and_(b.icmp_unsigned(">=", addr, lo), b.icmp_unsigned("<=", end, hi)),
                  b.icmp_unsigned("==", b.and_(pm, perm), perm))


def define_region_check(module: ir.Module, row0_args: bool = False) -> ir.Function:
    """The body of bpf_check_slow (or, with row0_args, of bpf_check_row0: row 0 from the arguments, the
    table scanned from row 1)."""
    fn = ir.Function(module, CHECK_ROW0_FN if row0_args else CHECK_SLOW_FN,
                     "bpf_check_row0" if row0_args else "bpf_check_slow")
    st, addr, size, info = fn.args[:4]
    entry, loop, body, nxt, yes, no, record, fail = (fn.append_basic_block(n) for n in
                                                     ("entry", "loop", "body", "next", "yes", "no", "record",
                                                      "fail"))
    b = ir.IRBuilder(entry)
    perm = b.and_(info, c64(0x7F))
    table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
    n = b.load(b.gep(st, [c64(S.NREGIONS)]))
    end = b.add(addr, size)
    nowrap = b.icmp_unsigned(">=", end, addr)
    if row0_args:
        first = c64(1)
        row0 = fn.append_basic_block("row0")
        b.cbranch(nowrap, row0, no)
        b.position_at_end(row0)
        lo0, hi0, perms0 = fn.args[4:7]
        b.cbranch(_row_ok(b, addr, end, lo0, hi0, perms0, perm), yes, loop)
        pred = row0
    else:
        first = b.select(b.icmp_unsigned("!=", b.and_(info, c64(SKIP_FAST_ROWS)), c64(0)), c64(2), c64(0))
        b.cbranch(nowrap, loop, no)
        pred = entry
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(first, pred)
    b.cbranch(b.icmp_unsigned("<", i, n), body, no)
    b.position_at_end(body)
    row = b.mul(i, c64(3))
    lo = b.load(b.gep(table, [row]))
    hi = b.load(b.gep(table, [b.add(row, c64(1))]))
    pm = b.load(b.gep(table, [b.add(row, c64(2))]))
    b.cbranch(_row_ok(b, addr, end, lo, hi, pm, perm), yes, nxt)
    b.position_at_end(nxt)
    i.add_incoming(b.add(i, c64(1)), nxt)
    b.branch(loop)
    b.position_at_end(yes)
    b.ret(ir.Constant(I1, 1))
    b.position_at_end(no)
    b.cbranch(b.icmp_unsigned(">=", info, c64(1 << 8)), record, fail)
    b.position_at_end(record)
    store_fault(b, st, info, addr, size)
    b.branch(fail)
    b.position_at_end(fail)
    b.ret(ir.Constant(I1, 0))
    return fn


def define_cold_addr(module: ir.Module, check_row0: ir.Function) -> ir.Function:
    """The body of bpf_cold_addr (see irlib.cold_addr_fn)."""
    fn = ir.Function(module, COLD_ADDR_FN, "bpf_cold_addr")
    fn.calling_convention = COLD_CC
    st, addr = fn.args[:2]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    scratch = b.ptrtoint(b.gep(st, [c64(S.SCRATCH)]), I64)
    clean = b.icmp_unsigned("==", b.load(b.gep(st, [c64(S.F_KIND)])), c64(0))
    with b.if_then(clean, likely=True):
        ok = b.call(check_row0, list(fn.args))
        b.ret(b.select(ok, addr, scratch))
    b.ret(scratch)
    return fn


def define_set_fault(module: ir.Module) -> ir.Function:
    """The body of bpf_set_fault."""
    fn = ir.Function(module, SET_FAULT_FN, "bpf_set_fault")
    st, info, addr = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    store_fault(b, st, info, addr, c64(0))
    b.ret_void()
    return fn


def build() -> ir.Module:
    module = ir.Module(name="bpfjit_support")
    define_region_check(module)
    define_cold_addr(module, define_region_check(module, row0_args=True))
    define_set_fault(module)
    return module


def ensure() -> None:
    """Compile the support module and bind its symbols, once per process."""
    global _ENGINE
    if _ENGINE is not None:
        return
    with _LOCK:
        if _ENGINE is not None:
            return
        text = str(build())
        key = "support-" + hashlib.sha256("\0".join(
            (llvmlite.__version__, target.HOST_CPU, target.HOST_FEATURES, text)).encode()).hexdigest()
        found = diskcache.load(key)
        ee = None
        if found is not None:              # object code from an earlier process: no LLVM work
            ee = target.mcjit(llvm.parse_assembly(""), 2, hooks=False, finalize=False)
            ee.add_object_file(llvm.ObjectFileRef.from_data(found[0]))
            ee.finalize_object()
            if not all(ee.get_function_address(n) for n in EXPORTS):
                ee = None
        if ee is None:
            mod = llvm.parse_assembly(text)
            mod.verify()
            target.optimize(mod, 2)
            captured = []
            ee = target.mcjit(mod, 2, hooks=False,
                              object_cache=(lambda m, buf: captured.append(bytes(buf)), lambda m: None))
            if captured:
                diskcache.store(key, captured[0], {})
        for name in EXPORTS:
            llvm.add_symbol(name, ee.get_function_address(name))
        _ENGINE = ee


target.before_link(ensure)
for _name in EXPORTS:
    target.symbol_provider(_name, ensure)
