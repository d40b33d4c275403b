"""The compiled runtime module of map operations: built from native.py once per process into its own
MCJIT engine (kept alive for the life of the process), its functions bound as ctypes callables for
Python and published with llvm.add_symbol so JIT programs call the very same code.

`lib()` returns the `Lib` (compiling on first use); `current_cpu(ncpus)` is the calling thread's cpu as
per-cpu maps see it. The module bakes process-specific addresses (arena, ring table, pthread key), so it
is never put in the compile cache.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import TYPE_CHECKING, Any

import llvmlite.binding as llvm

from ..jit import target
from . import arena
from .native import EXPORTS, build_module

_U64 = ctypes.c_uint64
_LOCK = threading.Lock()
_LIB: "Lib | None" = None
NCPUS = os.cpu_count() or 1          # default cpu count of per-cpu maps and perf event arrays
ARENA_SYMBOL = "bpfmap_arena_bounds"
_I64, _CP, _VP = ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p
_PY_PROTOS = {   # name -> (result, arguments) of the py_* callables
    "lookup": (_U64, [_U64, _CP, _I64, _U64]),
    "update": (_I64, [_U64, _CP, _CP, _U64, _I64]),
    "delete": (_I64, [_U64, _CP]),
    "get_next_key": (_I64, [_U64, _CP, _VP]),
    "rb_output": (_I64, [_U64, _CP, _U64, _U64]),
    "perf_output": (_I64, [_U64, _U64, _CP, _U64]),
    "push": (_I64, [_U64, _CP, _U64]),
    "pop": (_I64, [_U64, _VP, _U64]),
}


class Lib:
    """Addresses and ctypes callables of the runtime functions: `name` (every argument and result u64, as
    native code sees them) and `py_name` for the Python API (see _PY_PROTOS)."""

    if TYPE_CHECKING:       # the ctypes callables are bound by name in __init__ (EXPORTS, _PY_PROTOS)
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        key = ctypes.c_uint(0)
        if libc.pthread_key_create(ctypes.byref(key), None) != 0:
            raise OSError(ctypes.get_errno(), "pthread_key_create failed")
        self.tls_key = key.value
        self.module_ir = str(build_module(arena.ARENA_START, arena.ARENA_END, arena.RING_TABLE.ctypes.data,
                                          self.tls_key))
        mod = llvm.parse_assembly(self.module_ir)
        mod.verify()
        target.optimize(mod, 2, vectorize=False)   # short key loops: vector prologues cost more than they save
        self.ee = target.mcjit(mod, 2)
        self.addr: dict[str, int] = {}
        for name, nargs in EXPORTS.items():
            a = self.ee.get_function_address(name)
            if not a:
                raise RuntimeError(f"runtime module lacks {name}")
            self.addr[name] = a
            llvm.add_symbol(name, a)
            short = name[len("bpfmap_"):]
            setattr(self, short, ctypes.CFUNCTYPE(_U64, *([_U64] * nargs))(a))
        llvm.add_symbol(ARENA_SYMBOL, arena.ARENA_BOUNDS.ctypes.data)
        # the same functions typed for the Python API: read-only key/value buffers passed as bytes
        # (no copy), errno results signed
        for short, (res, args) in _PY_PROTOS.items():
            setattr(self, "py_" + short, ctypes.CFUNCTYPE(res, *args)(self.addr["bpfmap_" + short]))


def lib() -> Lib:
    global _LIB
    if _LIB is None:
        with _LOCK:
            if _LIB is None:
                _LIB = Lib()
    return _LIB


target.symbol_provider("bpfmap_", lib)     # what a program loaded from the disk cache links against


def set_default_ncpus(n: int) -> None:
    """The cpu count of per-cpu maps and perf event arrays created from now on without `ncpus=`."""
    global NCPUS
    if n < 1:
        raise ValueError(f"ncpus must be positive, got {n}")
    NCPUS = n


def current_cpu(ncpus: int | None = None) -> int:
    """The calling thread's cpu: a stable small id per thread (in order of first use), modulo ncpus
    (default NCPUS). Native code computes the same value, so a program sees the same per-cpu copy."""
    return lib().thread_id() % (ncpus or NCPUS)
