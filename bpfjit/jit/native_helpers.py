"""Native (LLVM IR) implementations of built-in helpers, named by `Helper.native`.

Each emitter adds `i64 name(i64* state, i64 r1..r5)` to the module. libc functions they call are bound
with llvm.add_symbol at first use. Python implementations of the same helpers live in helpers/builtin.py;
both must behave identically.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from llvmlite import ir

from .lower import I32, I64, NATIVE_FN

_LIBC = ctypes.CDLL(None)
_BOUND: set[str] = set()
CLOCK_MONOTONIC = 1


def bind_libc(name: str) -> None:
    if name not in _BOUND:
        llvm.add_symbol(name, ctypes.cast(getattr(_LIBC, name), ctypes.c_void_p).value)
        _BOUND.add(name)


def _ktime_get_ns(module: ir.Module, fn: ir.Function, checked: bool) -> None:
    bind_libc("clock_gettime")
    ts_t = ir.LiteralStructType([I64, I64])
    cg = module.globals.get("clock_gettime") or ir.Function(
        module, ir.FunctionType(I32, [I32, ts_t.as_pointer()]), "clock_gettime")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ts = b.alloca(ts_t)
    b.call(cg, [ir.Constant(I32, CLOCK_MONOTONIC), ts])
    sec = b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
    nsec = b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
    b.ret(b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec))


class NativeHelpers:
    """Registry of IR emitters: name -> emitter(module, fn, checked) filling in `fn` (NATIVE_FN:
    i64 (i64* state, i64 r1..r5)). In checked mode an emitter must validate pointer arguments with
    lower.region_check_fn(module). `may_fault`: the helper may set a fault (or a pending tail call) in the
    state, so the caller checks the state after the call. Others (runtime maps ...) add emitters."""

    def __init__(self):
        self._emitters = {"ktime_get_ns": (_ktime_get_ns, False)}

    def add(self, name: str, emitter, may_fault: bool = False) -> None:
        self._emitters[name] = (emitter, may_fault)

    def __contains__(self, name: str) -> bool:
        return name in self._emitters

    def may_fault(self, name: str) -> bool:
        return self._emitters[name][1]

    def emit(self, module: ir.Module, name: str, checked: bool = True) -> ir.Function:
        fn = ir.Function(module, NATIVE_FN, f"bpf_helper_{name}")
        fn.linkage = "internal"
        self._emitters[name][0](module, fn, checked)
        return fn


NATIVE = NativeHelpers()
