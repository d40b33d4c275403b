"""`JITEngine`: a program compiled to native code, with the interpreter's `run` contract plus native loops.

It decides how each helper is reached (native IR twin, or a ctypes callback into the Python
implementation), resolves lddw pseudo values, compiles through the cache, and calls the native entry
points with the GIL released (ctypes foreign calls). Faults written by native code into the state block
are raised as the same `RuntimeFault` the interpreter raises.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..errors import FAULT_CODE, FAULT_KINDS, LoadError, RuntimeFault, fault, helper_fault
from ..program import Config, Program
from . import compiler
from . import state as S
from .lower import MODULE_KINDS, HelperPlan, Lowering
from .native_helpers import NATIVE

M64 = (1 << 64) - 1
_U64 = ctypes.c_uint64
_VP = ctypes.c_void_p
RUN_MEM_T = ctypes.CFUNCTYPE(_U64, _VP)
BATCH_T = ctypes.CFUNCTYPE(_U64, _VP, _U64, _U64, _U64, _U64, _VP)
BENCH_T = ctypes.CFUNCTYPE(_U64, _VP, _U64, _U64, _U64, _U64)
HELPER_T = ctypes.CFUNCTYPE(_U64, _U64, _U64, _U64, _U64, _U64, _U64)

_TLS = threading.local()      # .ctx: HelperContext of the run in progress; .state; .error


def addr_of(arr: np.ndarray) -> int:
    """Address of a numpy array's data (cheaper than arr.ctypes.data, which builds a ctypes object)."""
    return arr.__array_interface__["data"][0]


def _callback(helper):
    """ctypes callback running a Python helper for native code; failures become a fault in the state."""
    fn = helper.py

    def cb(st_addr, r1, r2, r3, r4, r5):
        try:
            batch = getattr(_TLS, "batch", None)
            if batch is not None:     # run_batch: show the helper the record being run
                records, region = batch
                region.rebind(records[(ctypes.c_uint64 * S.NSLOTS).from_address(st_addr)[S.BATCH_INDEX]])
            return int(fn(_TLS.ctx, r1, r2, r3, r4, r5)) & M64
        except BaseException as e:  # noqa: BLE001 - nothing may escape into native code
            _TLS.error = e
            st = (ctypes.c_uint64 * S.NSLOTS).from_address(st_addr)
            if isinstance(e, RuntimeFault):
                st[S.F_KIND] = FAULT_CODE[e.kind]
                st[S.F_ADDR] = (e.addr or 0) & M64
                st[S.F_SIZE] = e.size or 0
            else:
                st[S.F_KIND] = FAULT_CODE["helper"]
            return 0
    return HELPER_T(cb)


class JITEngine:
    def __init__(self, prog: Program, config: Config, registry, resolve_lddw=None):
        self.prog = prog
        self.config = config
        self.registry = registry
        plan, callbacks = self._plan_helpers()
        self.callbacks = callbacks
        self.helper_table = np.array([ctypes.cast(cb, _VP).value for cb in callbacks] or [0], dtype=np.uint64)
        self._helper_table_addr = addr_of(self.helper_table)
        self._lddw = self._resolve_lddw(resolve_lddw)
        self._plan = plan
        self._modules: dict[str, compiler.Compiled] = {}
        self.compiled, self.cache_hit = self._module("program")
        self._run_mem = RUN_MEM_T(self.compiled.addr["bpf_run_mem"])
        self._loops = None
        self._last_state = None

    def _module(self, kind: str):
        """(compiled module of this kind, cache hit?) — see lower.MODULE_KINDS. "program" holds every entry
        point (run, batch, bench, tail entry) and is compiled by the constructor; "tail" is compiled on
        first use only for tail-call targets with Python helpers (their tail entry installs this engine's
        callback table, whose address is part of the module and of its cache key)."""
        cfg, prog = self.config, self.prog
        table = self._helper_table_addr if kind == "tail" and self.callbacks else 0
        key = compiler.cache_key(prog.to_bytes(), cfg.checked, cfg.insn_limit is not None, cfg.max_call_depth,
                                 cfg.stack_size, cfg.opt_level, kind, sorted(self._plan.entries.items()),
                                 sorted(self._lddw.items()), table)
        c, hit = compiler.get_or_compile(key, _Build(prog, cfg, self._plan, self._lddw, kind, table),
                                         cfg.opt_level, MODULE_KINDS[kind])
        self._modules[kind] = c           # keeps the machine code alive as long as this engine
        return c, hit

    def _loop_entries(self):
        """(bpf_batch, bpf_bench) of the program module (compiled with the rest by the constructor)."""
        if self._loops is None:
            c = self.compiled
            self._loops = (BATCH_T(c.addr["bpf_batch"]), BENCH_T(c.addr["bpf_bench"]))
        return self._loops

    @property
    def tail_entry_address(self) -> int:
        """Address of bpf_tail_entry for this program: what a prog_array slot holds (the program module's,
        or with Python helpers a tail module compiled on first use)."""
        if not self.callbacks:
            return self.compiled.addr["bpf_tail_entry"]
        c = self._modules.get("tail") or self._module("tail")[0]
        return c.addr["bpf_tail_entry"]

    @property
    def last_count(self) -> int:
        """Instructions charged by the meter in the last run of this engine (metered mode only)."""
        st = self._last_state
        return int(st[S.COUNT]) if st is not None else 0

    def fast_runner(self, rows, stack_top: int) -> "FastRunner | None":
        """A per-thread runner for repeated runs with no Python helper involved, else None."""
        if self.callbacks:
            return None
        return FastRunner(self, rows, stack_top)

    # ---- preparation ----
    def _plan_helpers(self):
        entries, callbacks, slots = {}, [], {}

        def bind(h):
            if h.native is not None and h.native in NATIVE:
                return ("native", h.native)
            if h.id not in slots:
                slots[h.id] = len(callbacks)
                callbacks.append(_callback(h))
            return ("py", slots[h.id])

        for pc, f in enumerate(self.prog.forms):
            if f is None:
                continue
            imm = self.prog.insns[pc].imm
            if f.op == "call":
                h = self.registry.get(imm)
                if h is None:
                    raise LoadError(f"call to unknown helper {imm}", pc, "imm")
                entries[("call", imm)] = bind(h)
            elif f.op == "call_btf":
                h = self.registry.get_btf(imm)
                if h is None:
                    raise LoadError(f"call to unknown helper with BTF id {imm}", pc, "imm")
                entries[("call_btf", imm)] = bind(h)
            elif f.op == "callx":
                for h in self.registry:
                    entries[("callx", h.id)] = bind(h)
        return HelperPlan(entries), callbacks

    def _resolve_lddw(self, resolve) -> dict[int, int]:
        out = {}
        insns = self.prog.insns
        for pc, f in enumerate(self.prog.forms):
            if f is None or not f.op.startswith("lddw"):
                continue
            if f.op == "lddw":
                out[pc] = (insns[pc].imm & 0xFFFFFFFF) | ((insns[pc + 1].imm & 0xFFFFFFFF) << 32)
            elif resolve is None:
                raise LoadError(f"lddw with src {insns[pc].src} ({f.op[5:]}) needs a runtime that resolves it",
                                pc, "src")
            else:
                out[pc] = resolve(pc, insns[pc].src, insns[pc].imm, insns[pc + 1].imm) & M64
        return out

    # ---- state ----
    def _state(self, aspace, mem_start: int, mem_len: int, stack_top: int, mem_perms: int = 3, skip=None):
        """The thread's state block for a run over `aspace`; region row 0 is reserved for the run's mem
        (bpf_run_mem and the batch loop write it), the address space's rows follow (but `skip`)."""
        st = getattr(_TLS, "state", None)
        if st is None:
            st = _TLS.state = np.zeros(S.NSLOTS, dtype=np.uint64)
            _TLS.state_addr = addr_of(st)
        rows = [(mem_start, mem_start + mem_len, mem_perms)] + \
            [(r.start, r.end, r.perms) for r in aspace.regions if r is not skip]
        table = np.array(rows + [(0, 0, 0)] * max(0, 2 - len(rows)), dtype=np.uint64).reshape(-1)
        st[:] = 0
        lim = self.config.insn_limit
        st[S.LIMIT] = lim if lim is not None else M64
        st[S.TABLE] = addr_of(table)
        st[S.NREGIONS] = len(table) // 3
        st[S.MEM_START] = mem_start
        st[S.MEM_LEN] = mem_len
        st[S.HELPERS] = self._helper_table_addr
        st[S.STACK_TOP] = stack_top
        st[S.TAIL_LIMIT] = self.config.tail_call_limit
        return st, table

    def _raise_fault(self, st) -> None:
        kind = FAULT_KINDS[int(st[S.F_KIND])]
        pc = int(st[S.F_PC])
        err, _TLS.error = getattr(_TLS, "error", None), None
        if err is not None and (kind == "helper" or isinstance(err, RuntimeFault)):
            raise helper_fault(err, pc) from err
        if kind in ("load", "store", "atomic"):
            raise fault(kind, pc, int(st[S.F_ADDR]), int(st[S.F_SIZE]))
        raise fault(kind, pc)

    # ---- running ----
    def run(self, aspace, r1: int, r2: int, stack_top: int, helper_ctx, mem_start: int = 0,
            mem_len: int = 0, mem_perms: int = 3) -> int:
        st, table = self._state(aspace, mem_start, mem_len, stack_top, mem_perms)
        _TLS.ctx = helper_ctx
        st[S.ARG_R1] = r1 & M64
        st[S.ARG_R2] = r2 & M64
        st[S.ARG_PERMS] = mem_perms
        r0 = self._run_mem(_TLS.state_addr)
        self._last_state = st
        if st[S.F_KIND]:
            self._raise_fault(st)
        return r0

    def run_batch(self, aspace, records: np.ndarray, stack_top: int, helper_ctx, mem_perms: int = 3,
                  record_region=None) -> np.ndarray:
        """One run per record; the native loop points region row 0 at each record in turn. record_region
        (the address space's region for the records) stays out of the native table, and Python helpers see
        it moved to the record being run."""
        n = len(records)
        out = np.zeros(n, dtype=np.uint64)
        if n == 0:
            return out
        stride = records.strides[0]
        base = addr_of(records)
        st, table = self._state(aspace, base, stride, stack_top, mem_perms, skip=record_region)
        _TLS.ctx = helper_ctx
        _TLS.batch = (records, record_region) if self.callbacks and record_region is not None else None
        batch, _ = self._loop_entries()
        try:
            done = batch(_TLS.state_addr, base, stride, n, stack_top, addr_of(out))
        finally:
            _TLS.batch = None
        if done < n:
            try:
                self._raise_fault(st)
            except RuntimeFault as e:
                e.record = int(done)
                raise
        return out

    def bench(self, aspace, r1: int, r2: int, stack_top: int, helper_ctx, n: int, mem_start: int = 0,
              mem_len: int = 0, mem_perms: int = 3) -> int:
        st, table = self._state(aspace, mem_start, mem_len, stack_top, mem_perms)
        _TLS.ctx = helper_ctx
        _, bench = self._loop_entries()
        r0 = bench(_TLS.state_addr, r1 & M64, r2 & M64, stack_top, n)
        if st[S.F_KIND]:
            self._raise_fault(st)
        return r0

    # ---- inspection ----
    def ir(self, optimized: bool = True) -> str:
        return self.compiled.optimized_ir if optimized else self.compiled.ir_text

    def native_asm(self) -> str:
        return self.compiled.native_asm()


class _Build:
    """Lowering of one module on demand (IR text); `huge` tells codegen the largest function is big."""

    def __init__(self, prog, cfg, plan, lddw, kind, table):
        self.args = (prog, cfg, plan, lddw, NATIVE, kind, table)
        self.huge = False

    def __call__(self) -> str:
        low = Lowering(*self.args)
        low.build()
        text = low.text()
        self.huge = low.huge
        return text


class FastRunner:
    """Prepared state of one thread for repeated `VM.run` calls: the state block and region table are
    built once; each call passes only (mem address, mem length, permissions) to bpf_run_mem."""
    __slots__ = ("engine", "st", "st_addr", "table", "r10", "call")

    def __init__(self, engine: JITEngine, rows, stack_top: int):
        self.engine = engine
        self.table = np.array([(0, 0, 0)] + list(rows), dtype=np.uint64).reshape(-1)
        st = self.st = (ctypes.c_uint64 * S.NSLOTS)()
        self.st_addr = ctypes.addressof(st)
        lim = engine.config.insn_limit
        st[S.LIMIT] = lim if lim is not None else M64
        st[S.TABLE] = addr_of(self.table)
        st[S.NREGIONS] = len(self.table) // 3
        st[S.HELPERS] = engine._helper_table_addr
        st[S.STACK_TOP] = stack_top
        st[S.TAIL_LIMIT] = engine.config.tail_call_limit
        self.r10 = stack_top
        self.call = engine._run_mem
        engine._last_state = st

    def run(self, addr: int, size: int, perms: int) -> int:
        st = self.st
        st[S.ARG_R1] = addr
        st[S.ARG_R2] = size
        st[S.ARG_PERMS] = perms
        r0 = self.call(self.st_addr)
        self.engine._last_state = st
        if st[0]:
            self.engine._raise_fault(st)
        return r0
