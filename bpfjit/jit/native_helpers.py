"""The registry of native (LLVM IR) helper emitters, named by `Helper.native`, and libc binding.

An emitter fills in `i64 name(i64* state, i64 r1..r5)` in a program's module; helpers/builtin.py and
helpers/map_helpers.py add theirs (their Python twins live beside them and must behave identically).
libc functions native code calls are declared with `libc_fn` and bound with llvm.add_symbol at first use.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from llvmlite import ir

from .irlib import NATIVE_FN

_LIBC = ctypes.CDLL(None)
_BOUND: set[str] = set()


def bind_libc(name: str) -> None:
    if name not in _BOUND:
        llvm.add_symbol(name, ctypes.cast(getattr(_LIBC, name), ctypes.c_void_p).value)
        _BOUND.add(name)


def libc_fn(module: ir.Module, name: str, fnty: ir.FunctionType) -> ir.Function:
    """The libc function `name` declared in module (and bound for the JIT linker)."""
    bind_libc(name)
    return module.globals.get(name) or ir.Function(module, fnty, name)


class NativeHelpers:
    """Registry of IR emitters: name -> emitter(module, fn, checked) filling in `fn` (NATIVE_FN:
    i64 (i64* state, i64 r1..r5)). In checked mode an emitter must validate pointer arguments with
    irlib.region_check_fn(module). `may_fault`: the helper may set a fault (or a pending tail call) in the
    state, so the caller checks the state after the call. Others (runtime maps ...) add emitters."""

    def __init__(self):
        self._emitters: dict[str, tuple] = {}

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
