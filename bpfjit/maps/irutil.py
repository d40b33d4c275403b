"""A small structured layer over llvmlite.ir for the map code: `Fn` wraps one function's IRBuilder with
i64 address arithmetic, loads/stores of descriptor fields (layout.FIELDS), atomics, allocas used as
variables (mem2reg promotes them), if/while blocks and libc declarations (bound with llvm.add_symbol).

Used by native.py (the runtime module of map operations) and emit.py (helper code inlined into
programs). Map semantics do not live here.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ..jit.native_helpers import libc_fn
from .layout import FIELDS

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P, I64P = I8.as_pointer(), I64.as_pointer()
M64 = (1 << 64) - 1

# libc functions the map code calls: name -> (return type, argument types)
LIBC = {
    "memcpy": (I8P, [I8P, I8P, I64]),
    "memset": (I8P, [I8P, I32, I64]),
    "sched_yield": (I32, []),
    "pthread_getspecific": (I8P, [I32]),
    "pthread_setspecific": (I32, [I32, I8P]),
}


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v & M64)


def declare(module: ir.Module, name: str, ret, args) -> ir.Function:
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def libc(module: ir.Module, name: str) -> ir.Function:
    ret, args = LIBC[name]
    return libc_fn(module, name, ir.FunctionType(ret, args))


class Fn:
    """One function under construction. Arguments and results are i64 unless `ret`/`args` say otherwise."""

    def __init__(self, module: ir.Module, name: str, nargs: int = 0, *, internal: bool = False, ret=I64,
                 args=None, fn: ir.Function | None = None):
        self.module = module
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(ret, args if args is not None else [I64] * nargs), name)
            if internal:
                fn.linkage = "internal"
        self.fn = fn
        self.args = fn.args
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)

    # ---- addresses and memory ----
    def add(self, a, *rest):
        for r in rest:
            a = self.b.add(a, r if isinstance(r, ir.Value) else c64(r))
        return a

    def mul(self, a, k):
        return self.b.mul(a, k if isinstance(k, ir.Value) else c64(k))

    def ptr(self, addr, ty=I64):
        return self.b.inttoptr(addr, ty.as_pointer())

    def ld(self, addr, ty=I64, align: int | None = None):
        v = self.b.load(self.ptr(addr, ty), align=align or ty.width // 8)
        return self.b.zext(v, I64) if ty.width < 64 else v

    def st(self, addr, v, ty=I64, align: int | None = None):
        v = v if isinstance(v, ir.Value) else ir.Constant(ty, v)
        if v.type.width > ty.width:
            v = self.b.trunc(v, ty)
        self.b.store(v, self.ptr(addr, ty), align=align or ty.width // 8)

    def ld_acq(self, addr, ty=I64):
        v = self.b.load_atomic(self.ptr(addr, ty), "acquire", ty.width // 8)
        return self.b.zext(v, I64) if ty.width < 64 else v

    def st_rel(self, addr, v, ty=I64):
        v = v if isinstance(v, ir.Value) else ir.Constant(ty, v)
        if v.type.width > ty.width:
            v = self.b.trunc(v, ty)
        self.b.store_atomic(v, self.ptr(addr, ty), "release", ty.width // 8)

    def field_addr(self, desc, name: str):
        return self.add(desc, 8 * FIELDS[name])

    def f(self, desc, name: str):
        return self.ld(self.field_addr(desc, name))

    def set_f(self, desc, name: str, v):
        self.st(self.field_addr(desc, name), v if isinstance(v, ir.Value) else c64(v))

    def elem(self, base, i, size: int = 8):
        """base + i * size (i64 array element address)."""
        return self.add(base, self.mul(i, size))

    # ---- comparisons ----
    def eq(self, a, b):
        return self.b.icmp_unsigned("==", a, b if isinstance(b, ir.Value) else c64(b))

    def ne(self, a, b):
        return self.b.icmp_unsigned("!=", a, b if isinstance(b, ir.Value) else c64(b))

    def ult(self, a, b):
        return self.b.icmp_unsigned("<", a, b if isinstance(b, ir.Value) else c64(b))

    def uge(self, a, b):
        return self.b.icmp_unsigned(">=", a, b if isinstance(b, ir.Value) else c64(b))

    def ugt(self, a, b):
        return self.b.icmp_unsigned(">", a, b if isinstance(b, ir.Value) else c64(b))

    def slt(self, a, b):
        return self.b.icmp_signed("<", a, b if isinstance(b, ir.Value) else c64(b))

    def sge(self, a, b):
        return self.b.icmp_signed(">=", a, b if isinstance(b, ir.Value) else c64(b))

    def sel(self, cond, a, b):
        return self.b.select(cond, a if isinstance(a, ir.Value) else c64(a), b if isinstance(b, ir.Value)
                             else c64(b))

    # ---- variables (allocas in the entry block) ----
    def var(self, init, ty=I64):
        with self.b.goto_block(self.entry):
            if self.entry.instructions:
                self.b.position_before(self.entry.instructions[0])
            a = self.b.alloca(ty)
        self.b.store(init if isinstance(init, ir.Value) else ir.Constant(ty, init), a)
        return a

    def get(self, var):
        return self.b.load(var)

    def put(self, var, v):
        self.b.store(v if isinstance(v, ir.Value) else c64(v), var)

    # ---- control flow ----
    def ret(self, v):
        self.b.ret(v if isinstance(v, ir.Value) else c64(v))

    @contextmanager
    def if_(self, cond, likely=None):
        with self.b.if_then(cond, likely=likely):
            yield

    @contextmanager
    def if_else(self, cond):
        with self.b.if_else(cond) as (then, otherwise):
            yield then, otherwise

    def ret_if(self, cond, value) -> None:
        """if cond: return value (then continue after it)."""
        with self.if_(cond, likely=False):
            self.ret(value)

    @contextmanager
    def while_(self, cond_fn):
        """while cond_fn(): <body>. Yields the exit block (branch to it to break)."""
        b = self.b
        head = self.fn.append_basic_block("while")
        body = self.fn.append_basic_block("do")
        done = self.fn.append_basic_block("done")
        b.branch(head)
        b.position_at_end(head)
        b.cbranch(cond_fn(), body, done)
        b.position_at_end(body)
        yield done
        if b.block.terminator is None:
            b.branch(head)
        b.position_at_end(done)

    def brk(self, done) -> None:
        self.b.branch(done)

    # ---- calls ----
    def call(self, fn, *args):
        return self.b.call(fn, [a if isinstance(a, ir.Value) else c64(a) for a in args])

    def memcpy(self, dst, src, n):
        self.b.call(libc(self.module, "memcpy"), [self.ptr(dst, I8), self.ptr(src, I8), n])

    def memset(self, dst, byte: int, n):
        self.b.call(libc(self.module, "memset"), [self.ptr(dst, I8), ir.Constant(I32, byte), n])
