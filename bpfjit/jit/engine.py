"""`JITEngine`: a program compiled to native code, with the interpreter's `run` contract plus native loops.

It decides how each helper is reached (native IR twin, or a ctypes callback into the Python
implementation), resolves lddw pseudo values, compiles through the cache, and calls the native entry
points with the GIL released (ctypes foreign calls). Faults written by native code into the state block
are raised as the same `RuntimeFault` the interpreter raises.

The state block's header (limits, region table, helper table, stack top, used-maps bitmap) is filled by ONE
function, `_fill_header`, for the general path and the per-thread fast runner alike. Every state block is
registered for its thread, so the watchdog (watchdog.py) can stop that thread's checked runs (timeouts,
Ctrl-C on the main thread) through the STOP slot that checked code polls at its meter points.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any
import weakref

import numpy as np

from ..engine import Engine
from ..errors import (FAULT_CODE, FAULT_KINDS, LIMITS, MEMORY_KINDS, RuntimeFault, Where, fault, helper_fault,
                      limit_fault, memory_fault)
from .. import watchdog
from ..maps import arena
from ..maps import layout as L
from ..memory import PERM_R, PERM_RW, PERM_W
from ..runenv import as_bytes_view, check_ctx_size, ctx_buffer, used_maps_of
from . import compiler
from . import state as S
from .lower import MODULE_KINDS, HelperPlan, Lowering
from .native_helpers import NATIVE

M64 = (1 << 64) - 1
_U64 = ctypes.c_uint64
_VP = ctypes.c_void_p
ENTRY_T = ctypes.CFUNCTYPE(_U64, _VP)        # bpf_entry(state) -> r0 of the last run (lower_entry)
HELPER_T = ctypes.CFUNCTYPE(_U64, _U64, _U64, _U64, _U64, _U64, _U64)

_TLS = threading.local()      # .ctx: HelperContext of the run in progress; .state; .error
# part of every program module's cache key: the disk cache key has no hash of the lowering's source, so a
# change of what compiled code does (here: the used-maps check and the stop poll of issue 8) must change it
CODE_REV = "safety-3"


def addr_of(arr: np.ndarray) -> int:
    """Address of a numpy array's data (cheaper than arr.ctypes.data, which builds a ctypes object)."""
    return arr.__array_interface__["data"][0]


def used_maps_bitmap(prepared) -> np.ndarray:
    """One bit per arena slot, set for the maps a program was loaded with (runenv.used_maps_of): the
    kernel's used_maps as checked map helpers test it (maps/emit.py guard_map); all set when it is None."""
    if used_maps_of(prepared) is None:
        return np.full(L.MAX_MAPS // 64, M64, dtype=np.uint64)
    bits = np.zeros(L.MAX_MAPS // 64, dtype=np.uint64)
    for m in prepared.used_maps:
        slot = (m.desc_addr - arena.ARENA_START) // L.DESC_BYTES
        bits[slot >> 6] |= np.uint64(1 << (slot & 63))
    return bits


# ---- stopping a thread's runs (watchdog hooks): every state block is registered for its thread ----
assert S.STOP == S.NSLOTS - 1, "JITEngine._state resets every slot before STOP"
_THREAD_STATES: dict[int, weakref.WeakSet] = {}


class _StateBlock:
    """The general path's per-thread state block (numpy), registered like a FastRunner's."""
    __slots__ = ("st", "__weakref__")

    def __init__(self):
        self.st = np.zeros(S.NSLOTS, dtype=np.uint64)


def _register_state(holder) -> None:
    """Register a new state block of this thread; a timeout of this thread's call that already fired stops
    it too (it may be created during that call)."""
    ident = threading.get_ident()
    with watchdog.lock:
        states = _THREAD_STATES.get(ident)
        if states is None:
            states = _THREAD_STATES[ident] = weakref.WeakSet()
        states.add(holder)
        req = watchdog.ARMED.get(ident)
        if req is not None and req.fired:
            holder.st[S.STOP] = watchdog.STOP_TIMEOUT
    if threading.current_thread() is threading.main_thread():
        watchdog.watch_sigint()


def _stop_fire(ident: int, reason: int, req) -> None:
    for h in list(_THREAD_STATES.get(ident, ())):
        h.st[S.STOP] = reason


def _stop_clear(ident: int) -> None:
    for h in list(_THREAD_STATES.get(ident, ())):
        h.st[S.STOP] = 0


watchdog.add_hook(_stop_fire, _stop_clear)


def _signals_run() -> None:
    """A Python-level call: the interpreter runs pending signal handlers here (a pending Ctrl-C raises)."""


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


class JITEngine(Engine):
    """A `pipeline.Prepared` program compiled to native code."""
    name = "jit"

    def __init__(self, prepared):
        super().__init__(prepared)
        self.config = prepared.code_config or prepared.config      # what the code is generated for
        self._ro_twin = None          # checked twin for read-only runs of a proven program that writes ctx
        plan, callbacks = self._plan_helpers()
        self.callbacks = callbacks
        # Python code may run during a run of this program: its own Python helpers, or those of tail-call
        # targets (their slots change at run time): such runs need the helper context and the batch view
        self._reaches_python = bool(callbacks) or any(getattr(m, "map_type", "") == "prog_array"
                                                      for m in prepared.used_maps)
        self.helper_table = np.array([ctypes.cast(cb, _VP).value for cb in callbacks] or [0], dtype=np.uint64)
        self._helper_table_addr = addr_of(self.helper_table)
        self.used_maps = used_maps_bitmap(prepared)
        self.used_maps_address = addr_of(self.used_maps)
        self._lddw = prepared.lddw
        self._plan = plan
        self._modules: dict[str, compiler.Compiled] = {}
        self._entry = None
        if prepared.is_tail_target:      # a prog_array slot's program: only its tail entry is ever used
            self.compiled, self.cache_hit = self._module("tail")
        else:
            self._program_module()
        self._last_state: Any = None          # the state block of the last run (numpy array or ctypes array)
        self._last_mem: Any = None
        self._local = threading.local()        # .fast: this thread's FastRunner
        for m in prepared.used_maps:             # prog_arrays: their targets need JIT entries too
            need = getattr(m, "need_native", None)
            if need is not None:
                need(JITEngine)

    def _module(self, kind: str):
        """(compiled module of this kind, cache hit?) — see lower.MODULE_KINDS. "program" holds the run,
        batch and bench entry points; "tail" the tail-call entry (with Python helpers it installs this
        engine's callback table, whose address is part of the module and of its cache key)."""
        cfg, prog = self.config, self.prog
        table = self._helper_table_addr if kind == "tail" and self.callbacks else 0
        key = compiler.cache_key(CODE_REV, self.prepared.code_key(), cfg.checked, cfg.insn_limit is not None,
                                 cfg.max_call_depth, cfg.stack_size, cfg.opt_level, kind,
                                 sorted(self._plan.entries.items()), sorted(self._lddw.items()), table)
        c, hit = compiler.get_or_compile(key, _Build(prog, cfg, self._plan, self._lddw, kind, table),
                                         cfg.opt_level, MODULE_KINDS[kind])
        self._modules[kind] = c           # keeps the machine code alive as long as this engine
        return c, hit

    def _program_module(self):
        """bpf_entry of the program module (run, run_batch and bench: inputs in the state's ARG_* slots, see
        lower_entry): compiled by the constructor, or on first run of an engine prepared as a tail-call
        target."""
        if self._entry is None:
            self.compiled, self.cache_hit = self._module("program")
            self._entry = ENTRY_T(self.compiled.addr["bpf_entry"])
        return self._entry

    def _call_entry(self, st, r1: int, r2: int, perms: int, count: int = 1, stride: int = 0, out: int = 0) -> int:
        """bpf_entry over `count` runs (out: the address of count uint64 results, else one result slot)."""
        st[S.ARG_R1] = r1 & M64
        st[S.ARG_R2] = r2 & M64
        st[S.ARG_PERMS] = perms
        st[S.ARG_STRIDE] = stride
        st[S.ARG_COUNT] = count
        st[S.ARG_OUT] = out or _TLS.state_addr + 8 * S.RESULT
        st[S.ARG_OMASK] = M64 if out else 0
        return self._program_module()(_TLS.state_addr)

    @property
    def tail_entry_address(self) -> int:
        """Address of bpf_tail_entry for this program: what a prog_array slot holds (the tail module: the
        only module of an engine prepared as a tail-call target; with Python helpers its entry installs
        this engine's callback table)."""
        c = self._modules.get("tail") or self._module("tail")[0]
        return c.addr["bpf_tail_entry"]

    @property
    def last_count(self) -> int | None:
        """Instructions charged by the meter in the last run of this engine; None when the code has no meter
        (proven-safe or trusted code, or insn_limit=None)."""
        if not (self.config.checked and self.config.insn_limit is not None):
            return None
        st = self._last_state
        return int(st[S.COUNT]) if st is not None else 0

    # ---- preparation ----
    def _plan_helpers(self):
        """How compiled code reaches each helper the program can call: its native twin, or a slot in the
        table of ctypes callbacks into the Python implementation."""
        entries, callbacks, slots = {}, [], {}
        for key, h in self.prepared.calls.items():
            if h.native is not None and h.native in NATIVE:
                entries[key] = ("native", h.native)
                continue
            if h.id not in slots:
                slots[h.id] = len(callbacks)
                callbacks.append(_callback(h))
            entries[key] = ("py", slots[h.id])
        return HelperPlan(entries), callbacks

    # ---- state ----
    def region_table(self, mem_row=(0, 0, 0)) -> np.ndarray:
        """The native region table of a run: row 0 the run's mem (bpf_entry rewrites it for
        each run), row 1 the thread's stack, then the runtime's map regions. run, run_batch and bench use the same
        rows (checked code tests rows 0 and 1 inline, the rest through bpf_check_slow)."""
        stack = self.env.stack()
        rows = [mem_row, (stack.start, stack.end, PERM_RW)] + \
            [(r.start, r.end, r.perms) for r in self.env.runtime_regions()]
        return np.array(rows, dtype=np.uint64).reshape(-1)

    def _fill_header(self, st, table: np.ndarray) -> None:
        """The state header every entry point expects (one place for the general and the fast path)."""
        lim = self.config.insn_limit
        st[S.LIMIT] = lim if lim is not None else M64
        st[S.TABLE] = addr_of(table)
        st[S.NREGIONS] = len(table) // 3
        st[S.HELPERS] = self._helper_table_addr
        st[S.STACK_TOP] = self.env.stack().end
        st[S.TAIL_LIMIT] = self.config.tail_call_limit
        st[S.USED_MAPS] = self.used_maps_address

    def _state(self, mem_start: int, mem_len: int, mem_perms: int = PERM_RW, table: np.ndarray | None = None):
        """The thread's general-path state block, reset for a run over [mem_start, mem_start + mem_len)
        (`table`: the region rows when they are not region_table's, as for packet runs)."""
        holder = getattr(_TLS, "state", None)
        if holder is None:
            holder = _TLS.state = _StateBlock()
            _TLS.state_addr = addr_of(holder.st)
            _register_state(holder)
        st = holder.st
        if table is None:
            table = self.region_table((mem_start, mem_start + mem_len, mem_perms))
        st[:S.STOP] = 0                    # all but STOP (the last slot): a stop request may be waiting
        self._fill_header(st, table)
        st[S.MEM_START] = mem_start
        st[S.MEM_LEN] = mem_len
        return st, table

    def _raise_fault(self, st, ctx_name: str = "mem", row0: tuple[int, int, int] | None = None) -> None:
        """Raise the fault the native code recorded in `st`, worded as the interpreter words it: memory
        faults are described against the run's region table (row 0 is the run's mem, called `ctx_name`;
        `row0` replaces it when the table does not hold the faulting record's bounds)."""
        kind = FAULT_KINDS[int(st[S.F_KIND])]
        pc = int(st[S.F_PC])
        if kind == "timeout" and int(st[S.STOP]) == watchdog.STOP_INTERRUPT:
            st[S.STOP] = 0
            _signals_run()               # Python's own handler raises KeyboardInterrupt here ...
            raise KeyboardInterrupt      # ... unless it already ran
        err, _TLS.error = getattr(_TLS, "error", None), None
        if err is not None and not isinstance(err, Exception):
            raise err                # KeyboardInterrupt, SystemExit ... from a Python helper, after the unwind
        n = int(st[S.NREGIONS])
        rows = np.ctypeslib.as_array((_U64 * (3 * n)).from_address(int(st[S.TABLE]))).reshape(n, 3).tolist() \
            if n else []
        if row0 is not None and rows:
            rows[0] = list(row0)

        def locate(k: str, addr: int, size: int) -> Where:
            return self.env.locate(k, addr, size, rows, ctx_name)
        if err is not None and (kind == "helper" or isinstance(err, RuntimeFault)):
            raise helper_fault(err, pc, locate) from err
        if kind in MEMORY_KINDS:
            addr, size = int(st[S.F_ADDR]), int(st[S.F_SIZE])
            raise memory_fault(kind, pc, addr, size, locate(kind, addr, size))
        if kind in LIMITS:
            raise limit_fault(kind, pc, getattr(self.config, LIMITS[kind][0]))
        raise fault(kind, pc)

    # ---- running ----
    @property
    def last_mem(self):
        last = self._last_mem
        if last is None or isinstance(last, np.ndarray):
            return last if last is None or last.dtype == np.uint8 and last.ndim == 1 else \
                last.reshape(-1).view(np.uint8)
        fr, n = last                       # bytes-like input run in the fast runner's scratch buffer
        return fr.scratch[:n].copy()

    def _fast(self):
        """This thread's FastRunner (rebuilt when the runtime's regions change); None when Python code may
        run during the run (it needs the helper context the general path sets up)."""
        if self._reaches_python:
            return None
        fr = self._local.__dict__.get("fast")
        regions = self.env.runtime_regions()
        if fr is None or fr.regions_src is not regions:
            fr = self._local.fast = FastRunner(self, regions)
        return fr

    def _checked_twin(self) -> "JITEngine":
        """The same program compiled with runtime checks: a proven program whose proof lets it store into
        its context runs read-only input through this (a store must fault, not write)."""
        if self._ro_twin is None:
            self._ro_twin = JITEngine(self.prepared.checked_variant())
        return self._ro_twin

    def _needs_twin(self, mem, readonly: bool) -> bool:
        return self.prepared.writes_ctx and (readonly or isinstance(mem, np.ndarray) and not mem.flags.writeable
                                             or isinstance(mem, memoryview) and mem.readonly)

    def run(self, mem=None, readonly: bool = False) -> int:
        if self.prepared.writes_ctx and self._needs_twin(mem, readonly):
            twin = self._checked_twin()
            r0 = twin.run(mem, readonly)
            self._last_mem, self._last_state = twin._last_mem, twin._last_state
            return r0
        fr = self._local.__dict__.get("fast")
        if fr is None or fr.regions_src is not self.env.runtime_regions():
            fr = self._fast()
            if fr is None:
                return self._run_general(mem, readonly)
        return fr.run_input(mem, readonly)

    def _run_general(self, mem, readonly: bool) -> int:
        """A run through a fresh state block and address space (programs with Python helpers)."""
        env = self.env
        buf, perms, aspace, r1, r2 = env.open(mem, readonly)
        self._last_mem = buf
        st, table = self._state(r1, r2, perms)
        _TLS.ctx = env.helper_ctx(aspace)
        r0 = self._call_entry(st, r1, r2, perms)
        self._last_state = st
        if st[S.F_KIND]:
            self._raise_fault(st)
        return r0

    def run_batch(self, records, perms: int) -> np.ndarray:
        """One run per record; the native loop points region row 0 at each record in turn. The record's
        region stays out of the native table, and Python helpers see it moved to the record being run."""
        if self.prepared.writes_ctx and not perms & PERM_W:
            twin = self._checked_twin()
            out = twin.run_batch(records, perms)
            self._last_state = twin._last_state
            return out
        n, stride = records.shape
        out = np.zeros(n, dtype=np.uint64)
        if n == 0:
            return out
        env = self.env
        record_region = env.ctx_region(records[0], perms, "record")
        aspace = env.address_space(record_region)
        base = addr_of(records)
        top = env.stack().end
        st, table = self._state(base, stride, perms)
        _TLS.ctx = env.helper_ctx(aspace)
        _TLS.batch = (records, record_region) if self._reaches_python else None
        try:
            self._call_entry(st, base, stride, perms, n, stride, addr_of(out))
        finally:
            _TLS.batch = None
        done = int(st[S.DONE])
        self._last_state = st
        if done < n:
            try:
                start = base + int(done) * stride
                self._raise_fault(st, "record", (start, start + stride, perms))
            except RuntimeFault as e:
                e.record = int(done)
                raise
        return out

    def bench(self, mem, n: int) -> int:
        env = self.env
        if self._needs_twin(mem, False):
            return self._checked_twin().bench(mem, n)
        buf, perms, aspace, r1, r2 = env.open(mem, False)
        self._last_mem = buf
        if n == 0:                   # no run: the meter keeps the count of the last one (as the interpreter)
            return 0
        top = env.stack().end
        st, table = self._state(r1, r2, perms)
        _TLS.ctx = env.helper_ctx(aspace)
        r0 = self._call_entry(st, r1, r2, perms, n)
        self._last_state = st
        if st[S.F_KIND]:
            self._raise_fault(st)
        return r0

    def run_packets(self, prun) -> np.ndarray:
        """One run per packet of a packets.PacketRun in one native call (jit/pktrun.py)."""
        from .pktrun import run_packets
        return run_packets(self, prun, _TLS)

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
    """Prepared state of one thread for repeated runs with no Python helper involved: the state block and
    region table are built once; each call places the input (numpy arrays, bytearrays and writable
    memoryviews in place, the address of the last array remembered; bytes copied into a scratch buffer) and
    passes only (address, length, permissions) to bpf_entry. Input is checked as runenv.ctx_buffer does."""
    __slots__ = ("engine", "st", "st_addr", "table", "call", "regions_src", "ptype", "last_obj", "last_addr",
                 "last_size", "scratch", "scratch_addr", "min_size", "__weakref__")

    def __init__(self, engine: JITEngine, regions_src):
        self.engine = engine
        self.regions_src = regions_src
        self.ptype = engine.env.ptype
        self.min_size = engine.env.min_size
        self.table = engine.region_table()
        st = self.st = (ctypes.c_uint64 * S.NSLOTS)()
        self.st_addr = ctypes.addressof(st)
        engine._fill_header(st, self.table)
        _register_state(self)
        self.call = engine._program_module()
        st[S.ARG_STRIDE] = 0
        st[S.ARG_COUNT] = 1
        st[S.ARG_OUT] = self.st_addr + 8 * S.RESULT
        st[S.ARG_OMASK] = 0
        self.last_obj: Any = None         # the last numpy array run (kept alive, so its address stays valid)
        self.last_addr = self.last_size = 0
        self.scratch = np.zeros(256, dtype=np.uint8)
        self.scratch_addr = addr_of(self.scratch)

    def run_input(self, mem, readonly: bool) -> int:
        eng = self.engine
        if mem is None:
            if self.ptype.ctx_size is not None or self.min_size:
                ctx_buffer(self.ptype, None, readonly, self.min_size)     # raises the shared error
            eng._last_mem = None
            return self.run(0, 0, PERM_RW)
        if mem is self.last_obj:                                  # the same array again: address is known
            addr, size = self.last_addr, self.last_size
            writable = mem.flags.writeable
        elif type(mem) is bytes:
            size = len(mem)
            check_ctx_size(self.ptype, size, "mem", self.min_size)
            if size > len(self.scratch):
                self.scratch = np.zeros(max(size, 2 * len(self.scratch)), dtype=np.uint8)
                self.scratch_addr = addr_of(self.scratch)
            ctypes.memmove(self.scratch_addr, mem, size)
            eng._last_mem = (self, size)
            return self.run(self.scratch_addr if size else 0, size, PERM_R if readonly or
                            self.ptype.ctx_readonly else PERM_RW)
        else:
            buf, writable = as_bytes_view(mem)
            size = buf.size
            check_ctx_size(self.ptype, size, "mem", self.min_size)
            addr = addr_of(buf) if size else 0
            if isinstance(mem, np.ndarray):
                self.last_obj, self.last_addr, self.last_size = mem, addr, size
            mem = buf
        eng._last_mem = mem if isinstance(mem, np.ndarray) else None
        ro = readonly or self.ptype.ctx_readonly or not writable
        return self.run(addr, size, PERM_R if ro else PERM_RW)

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
