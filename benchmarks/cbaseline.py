"""The C baselines: benchmarks/c/<name>.c compiled by the system C compiler at -O2 into a shared object
and called through ctypes (`bench(mem, len, n)` repeats the algorithm natively, see c/bench.h).
$CC picks the compiler; $BPFJIT_BENCH_CFLAGS adds flags (the default targets the generic x86-64 baseline,
while the JIT compiles for the host CPU).

Only compiling and loading live here; which programs exist is workloads.py's business.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from workloads import C_DIR

CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
          *os.environ.get("BPFJIT_BENCH_CFLAGS", "").split())   # e.g. BPFJIT_BENCH_CFLAGS=-march=native
_U64 = ctypes.c_uint64
_VP = ctypes.c_void_p


class NoCompiler(RuntimeError):
    pass


def find_compiler() -> str:
    """$CC if set, else the first of cc, gcc, clang on PATH."""
    for cand in filter(None, (os.environ.get("CC"), "cc", "gcc", "clang")):
        path = shutil.which(cand)
        if path:
            return path
    raise NoCompiler("no C compiler found ($CC, cc, gcc or clang): the C -O2 baselines are skipped")


def compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else cc


class CBaseline:
    """One compiled baseline: `run_once(mem)` and `bench(mem, n)` -> the algorithm's result."""

    def __init__(self, so_path: Path):
        self.lib = ctypes.CDLL(str(so_path))
        for fn, args in (("run_once", [_VP, _U64]), ("bench", [_VP, _U64, _U64])):
            getattr(self.lib, fn).argtypes = args
            getattr(self.lib, fn).restype = _U64

    @staticmethod
    def _ptr(mem: np.ndarray | None) -> tuple[int | None, int]:
        return (None, 0) if mem is None else (mem.ctypes.data, mem.nbytes)

    def run_once(self, mem: np.ndarray | None) -> int:
        return self.lib.run_once(*self._ptr(mem))

    def bench(self, mem: np.ndarray | None, n: int) -> int:
        return self.lib.bench(*self._ptr(mem), n)


def build(name: str, out_dir: Path, cc: str) -> CBaseline:
    """Compile c/<name>.c into out_dir/<name>.so and load it."""
    so = out_dir / f"{name}.so"
    res = subprocess.run([cc, *CFLAGS, "-I", str(C_DIR), "-o", str(so), str(C_DIR / f"{name}.c")],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"compiling c/{name}.c failed:\n{res.stderr}")
    return CBaseline(so)
