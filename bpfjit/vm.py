"""`VM`: one loaded program bound to an engine (interpreter or JIT), a Config and a helper registry.

The VM owns what both engines must share so that they behave identically: the address space (the run's
mem/ctx region, a per-thread stack at a fixed address, runtime regions such as map storage), the entry
registers (r1 = mem address, r2 = mem length, r10 = stack top) and the helper context.
Engines live in interp.py and jit/; this module only wires them.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

import numpy as np

from .errors import BPFError, RuntimeFault
from .helpers import HelperContext, default_registry
from .memory import PERM_R, PERM_RW, AddressSpace, Region, as_buffer
from .program import DEFAULT_CONFIG, Config, Program

ENGINES = ("interp", "jit")
_TLS = threading.local()


class _MemRunner:
    """Places a run's mem for the JIT fast path: numpy arrays in place (address cached for the same
    object), bytes-like input copied into a per-thread scratch buffer."""
    __slots__ = ("inner", "run", "regions_src", "last_obj", "last_mem", "scratch", "scratch_addr")

    def __init__(self, inner, regions_src):
        self.inner = inner
        self.run = inner.run
        self.regions_src = regions_src
        self.last_obj = None
        self.last_mem = None
        self.scratch = np.zeros(256, dtype=np.uint8)
        self.scratch_addr = self.scratch.ctypes.data

    def place(self, mem):
        if isinstance(mem, np.ndarray) and mem.flags.c_contiguous:
            ai = mem.__array_interface__
            self.last_obj, self.last_mem = mem, (ai["data"][0], mem.nbytes)
            return ai["data"][0], mem.nbytes, PERM_RW if mem.flags.writeable else PERM_R
        data = mem if isinstance(mem, bytes) else bytes(memoryview(mem))
        n = len(data)
        if n > len(self.scratch):
            self.scratch = np.zeros(max(n, 2 * len(self.scratch)), dtype=np.uint8)
            self.scratch_addr = self.scratch.ctypes.data
        ctypes.memmove(self.scratch_addr, data, n)
        return self.scratch_addr, n, PERM_RW

    def view_of(self, mem):
        if isinstance(mem, np.ndarray) and mem.flags.c_contiguous:
            return mem.reshape(-1).view(np.uint8)
        return self.scratch[:len(mem) if isinstance(mem, (bytes, bytearray)) else memoryview(mem).nbytes].copy()


@contextmanager
def _exclusive():
    """Yields True if no program is running in this thread (and marks one running), else False."""
    if getattr(_TLS, "active", False):
        yield False
        return
    _TLS.active = True
    try:
        yield True
    finally:
        _TLS.active = False


def thread_stack(size: int) -> Region:
    """The calling thread's BPF stack of `size` bytes, at one address for every VM and engine in the thread.

    It is not cleared between runs (as in the kernel, reading uninitialised stack is a program bug).
    """
    stacks = getattr(_TLS, "stacks", None)
    if stacks is None:
        stacks = _TLS.stacks = {}
    st = stacks.get(size)
    if st is None:
        st = stacks[size] = Region("stack", np.zeros(size, dtype=np.uint8), PERM_RW)
    return st


class VM:
    """A program ready to run. `engine` is "interp" (reference interpreter) or "jit" (LLVM)."""

    def __init__(self, program: Program, engine: str = "interp", config: Config | None = None,
                 helpers=None, runtime=None):
        if engine not in ENGINES:
            raise BPFError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        self.program = program
        self.engine_name = engine
        self.config = config or DEFAULT_CONFIG
        program.validate(self.config)
        self.runtime = runtime
        self.helpers = helpers or (runtime.helpers if runtime is not None else default_registry())
        resolve = None
        if runtime is not None:
            runtime.check_program(program)
            resolve = lambda pc, src, imm, next_imm: runtime.resolve_lddw(program, pc, src, imm, next_imm)  # noqa: E731
        self._last = None
        self._fast_ok = None
        self._fast_local = threading.local()
        if engine == "interp":
            from .interp import Interpreter
            self.engine = Interpreter(program, self.config, self.helpers, resolve)
        else:
            from .jit import JITEngine
            self.engine = JITEngine(program, self.config, self.helpers, resolve)

    def _stack(self) -> Region:
        return thread_stack(self.config.stack_size * self.config.max_call_depth)

    def address_space(self, mem_region: Region | None) -> AddressSpace:
        aspace = AddressSpace()
        if mem_region is not None:
            aspace.add(mem_region)
        aspace.add(self._stack())
        if self.runtime is not None:
            for r in self.runtime.regions():
                aspace.add(r)
        return aspace

    def _ctx(self, aspace) -> HelperContext:
        return HelperContext(aspace, self.program, self.runtime, config=self.config)

    def run(self, mem=None, *, readonly: bool = False) -> int:
        """Run once. mem (bytes-like or numpy array) is passed in r1/r2; numpy arrays are used in place,
        bytes are copied into a per-thread buffer (see `last_mem` for the memory after the run).

        One program runs per thread at a time (the kernel's bpf_prog_active): a nested run, e.g. from a
        Python helper, returns 0 without running.
        """
        tls = _TLS.__dict__
        if tls.get("active"):
            return 0
        fast = self._fast_local.__dict__.get("runner")
        if fast is None or (self.runtime is not None and fast.regions_src is not self.runtime.regions()):
            fast = self._fast_runner()
            if fast is None:
                with _exclusive():
                    return self._run(mem, readonly)
        tls["active"] = True
        try:
            if mem is None:
                self._last = None
                return fast.run(0, 0, PERM_RW)
            if mem is fast.last_obj:                     # the same array again: address is known
                addr, size = fast.last_mem
                perms = PERM_RW if mem.flags.writeable else PERM_R
            else:
                addr, size, perms = fast.place(mem)
            self._last = (fast, mem)
            return fast.run(addr if size else 0, size, PERM_R if readonly else perms)
        finally:
            tls["active"] = False

    @property
    def last_mem(self):
        """The memory of the last `run` (a numpy uint8 array), None if it had no mem."""
        last = self._last
        if last is None:
            return None
        if isinstance(last, np.ndarray):
            return last
        fast, mem = last
        return fast.view_of(mem)

    def _fast_runner(self):
        """The calling thread's prepared JIT runner, or None (interpreter, Python helpers)."""
        if self._fast_ok is False:
            return None
        local = self._fast_local.__dict__
        fr = local.get("runner")
        regions = self.runtime.regions() if self.runtime is not None else None
        if fr is None or fr.regions_src is not regions:
            stack = self._stack()
            rows = [(stack.start, stack.end, PERM_RW)] + [(r.start, r.end, r.perms) for r in regions or ()]
            inner = self.engine.fast_runner(rows, stack.end) if self.engine_name == "jit" else None
            if inner is None:
                self._fast_ok = False
                return None
            fr = local["runner"] = _MemRunner(inner, regions)
        return fr

    def _prepare(self, mem, readonly: bool):
        """(aspace, helper ctx, r1, r2, mem permissions, r10) of a run over `mem` (general path)."""
        region = None
        if mem is not None:
            buf = as_buffer(mem)
            region = Region("mem", buf, PERM_R if readonly or not buf.flags.writeable else PERM_RW)
        self._last = region.buf if region is not None else None
        aspace = self.address_space(region)
        r1 = region.start if region is not None and region.size else 0
        r2 = region.size if region is not None else 0
        perms = region.perms if region is not None else PERM_RW
        return aspace, self._ctx(aspace), r1, r2, perms, self._stack().end

    def _run(self, mem, readonly: bool) -> int:
        aspace, ctx, r1, r2, perms, r10 = self._prepare(mem, readonly)
        return self.engine.run(aspace, r1, r2, r10, ctx, r1, r2, perms)

    def run_batch(self, records, *, readonly: bool = False) -> np.ndarray:
        """Run once per record; returns a uint64 array of r0 values (r1 = record address, r2 = its size).

        records: a C-contiguous numpy array whose first axis enumerates records (2-D uint8, or 1-D of a
        structured dtype). The JIT runs the whole batch in one native call. A fault raises RuntimeFault
        with `.record` set to the index of the faulting record.
        """
        with _exclusive() as ok:
            if not ok:
                return np.zeros(len(records), dtype=np.uint64)
            return self._run_batch(records, readonly)

    def _run_batch(self, records, readonly: bool) -> np.ndarray:
        recs = np.asarray(records)
        if recs.ndim == 0 or not recs.flags.c_contiguous:
            raise BPFError("records must be a C-contiguous numpy array with one record per row")
        n = len(recs)
        if n == 0:
            return np.zeros(0, dtype=np.uint64)
        stride = recs.strides[0]
        if stride <= 0:
            raise BPFError("records must have a positive record size")
        perms = PERM_R if readonly or not recs.flags.writeable else PERM_RW
        flat = recs.reshape(n, -1).view(np.uint8).reshape(n, stride)
        stack = self._stack()
        if hasattr(self.engine, "run_batch"):
            record = Region("record", flat[0], perms)
            aspace = self.address_space(record)
            ctx = self._ctx(aspace)
            return self.engine.run_batch(aspace, flat, stack.end, ctx, perms, record)
        out = np.zeros(n, dtype=np.uint64)
        for i in range(n):
            region = Region("record", flat[i], perms)
            aspace = self.address_space(region)
            ctx = self._ctx(aspace)
            try:
                out[i] = self.engine.run(aspace, region.start, stride, stack.end, ctx, region.start, stride)
            except RuntimeFault as e:
                e.record = i
                raise
        return out

    def bench(self, mem=None, n: int = 1000) -> int:
        """Run n times on the same mem (natively in one call for the JIT); returns the last r0."""
        with _exclusive() as ok:
            return self._bench(mem, n) if ok else 0

    def _bench(self, mem, n: int) -> int:
        aspace, ctx, r1, r2, perms, r10 = self._prepare(mem, False)
        if hasattr(self.engine, "bench"):
            return self.engine.bench(aspace, r1, r2, r10, ctx, n, r1, r2, perms)
        r0 = 0
        for _ in range(n):
            r0 = self.engine.run(aspace, r1, r2, r10, ctx, r1, r2, perms)
        return r0


def run(program: Program | str | bytes, mem=None, engine: str = "interp", config: Config | None = None,
        **kw) -> int:
    """One-shot convenience: assemble/decode if needed, run once, return r0."""
    if isinstance(program, str):
        program = Program.from_asm(program, config or DEFAULT_CONFIG)
    elif isinstance(program, (bytes, bytearray)):
        program = Program.from_bytes(bytes(program), config or DEFAULT_CONFIG)
    return VM(program, engine, config, **kw).run(mem)
