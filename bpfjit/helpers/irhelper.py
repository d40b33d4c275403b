"""`IRHelper`: conveniences for emitting the native twin of a helper (LLVM IR), shared by builtin.py and
trace.py. Only IR building lives here: no helper semantics, no registry.
"""
from __future__ import annotations

from llvmlite import ir

from ..errors import FAULT_CODE
from ..jit import state as S
from ..memory import PERM_W
from ..jit.irlib import I8P, I32, I64, c64, region_check_fn
from ..jit.native_helpers import libc_fn

CLOCK_MONOTONIC = 1          # clockid of ktime_get_ns (clock_gettime)


class IRHelper:
    """Emitting one helper body into `fn` (jit.irlib.NATIVE_FN: i64 (i64* state, i64 r1..r5))."""

    def __init__(self, module: ir.Module, fn: ir.Function):
        self.module, self.fn, self.st = module, fn, fn.args[0]
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    def libc(self, name: str, fnty: ir.FunctionType) -> ir.Function:
        return libc_fn(self.module, name, fnty)

    def libc_i32(self, name: str):
        """zext(name()) for a libc function `int name(void)`."""
        return self.b.zext(self.b.call(self.libc(name, ir.FunctionType(I32, [])), []), I64)

    def ptr(self, addr):
        return self.b.inttoptr(addr, I8P)

    def var(self, name: str, init: int = 0):
        """An i64 local: an alloca promoted by mem2reg (create it in the entry block, before any branch)."""
        v = self.b.alloca(I64, name=name)
        self.b.store(c64(init), v)
        return v

    def check(self, addr, size, perm: int):
        return self.b.call(region_check_fn(self.module), [self.st, addr, size, c64(perm)])

    def fault(self, kind: str, addr, size) -> None:
        """Leave a memory fault in the state (the caller sets its pc) and return."""
        b = self.b
        for slot, v in ((S.F_KIND, c64(FAULT_CODE[kind])), (S.F_ADDR, addr), (S.F_SIZE, size)):
            b.store(v, b.gep(self.st, [c64(slot)]))
        b.ret(c64(0))

    def memmove(self, dst, src, n) -> None:
        fnty = ir.FunctionType(I8P, [I8P, I8P, I64])
        self.b.call(self.libc("memmove", fnty), [self.ptr(dst), self.ptr(src), n])

    def memset(self, dst, value: int, n) -> None:
        fnty = ir.FunctionType(I8P, [I8P, I32, I64])
        self.b.call(self.libc("memset", fnty), [self.ptr(dst), ir.Constant(I32, value), n])

    def ktime_ns(self):
        b = self.b
        ts_t = ir.LiteralStructType([I64, I64])
        ts = b.alloca(ts_t)
        b.call(self.libc("clock_gettime", ir.FunctionType(I32, [I32, ts_t.as_pointer()])),
               [ir.Constant(I32, CLOCK_MONOTONIC), ts])
        sec, nsec = (b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, k)])) for k in (0, 1))
        return b.add(b.mul(sec, c64(1_000_000_000)), nsec)

    def writable_dst(self, dst, size) -> None:
        """Continue only if [dst, dst+size) is writable; otherwise fault "store" (as `_check_dst`)."""
        b = self.b
        ok, bad = self.fn.append_basic_block("dst_ok"), self.fn.append_basic_block("dst_bad")
        b.cbranch(self.check(dst, size, PERM_W), ok, bad)
        b.position_at_end(bad)
        self.fault("store", dst, size)
        b.position_at_end(ok)

    def return_if_zero(self, size) -> None:
        b = self.b
        zero, cont = self.fn.append_basic_block("size_zero"), self.fn.append_basic_block("size_ok")
        b.cbranch(b.icmp_unsigned("==", size, c64(0)), zero, cont)
        b.position_at_end(zero)
        b.ret(c64(0))
        b.position_at_end(cont)
