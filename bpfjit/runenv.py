"""What every run of a prepared program sees, built the same way for both engines.

- the caller's input turned into the context buffer (`ctx_buffer`, `records_view`): which Python objects are
  accepted, the program type's context size and read-only rule, one `ConfigError` for anything else;
- the per-thread BPF stack (`thread_stack`, one address per thread and size, shared by every VM so both
  engines see the same stack addresses);
- the address space of a run (`RunEnv.address_space`: ctx region, stack, the runtime's map regions) and the
  entry registers (r1 = ctx address, r2 = its length when the program type says so, r10 = stack top);
- the one-program-per-thread guard (`exclusive`, the seed's bpf_prog_active).

Engines (interp.py, jit/engine.py) consume this; nothing here executes instructions or knows an engine.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from .errors import FAULT_MESSAGES, ConfigError, RuntimeFault, Where
from .faultinfo import Span, describe_access
from .helpers import HelperContext
from .log import get_logger
from .memory import PERM_R, PERM_RW, AddressSpace, Region

logger = get_logger(__name__)

_TLS = threading.local()
MAX_BATCH = 1 << 40          # records per run_batch (a numpy array cannot be larger in practice)
MAX_BENCH = 1 << 62          # runs per bench


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


def running() -> bool:
    """True while a program runs in this thread."""
    return _TLS.__dict__.get("active", False)


@contextmanager
def exclusive():
    """Yields True if no program is running in this thread (and marks one running), else False: a nested
    run (a Python helper starting another program) does not run, as the kernel's bpf_prog_active."""
    tls = _TLS.__dict__
    if tls.get("active"):
        logger.debug("nested run skipped: a program is already running in this thread")
        yield False
        return
    tls["active"] = True
    try:
        yield True
    finally:
        tls["active"] = False


def _describe(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"a numpy array of dtype {obj.dtype} and shape {obj.shape}"
    return f"a {type(obj).__name__}"


ACCEPTED = "bytes, bytearray, a contiguous memoryview or a C-contiguous numpy array of a non-object dtype"


def as_bytes_view(mem, what: str = "mem") -> tuple[np.ndarray, bool]:
    """(1-D uint8 view of mem, writable?) for the byte buffers a run accepts; ConfigError for anything else.

    numpy arrays, bytearrays and writable memoryviews are used in place (stores are visible to the caller);
    bytes are immutable, so they are viewed read-only here (engines copy them into a private buffer)."""
    if isinstance(mem, np.ndarray):
        if mem.dtype.hasobject:
            raise ConfigError(f"must be {ACCEPTED}; got {_describe(mem)} (object dtype)", what)
        if not mem.flags.c_contiguous:
            raise ConfigError(f"must be {ACCEPTED}; got {_describe(mem)} that is not C-contiguous "
                              "(np.ascontiguousarray makes a copy)", what)
        return mem.reshape(-1).view(np.uint8), bool(mem.flags.writeable)
    if isinstance(mem, (bytes, bytearray, memoryview)):
        if isinstance(mem, memoryview) and not mem.c_contiguous:
            raise ConfigError(f"must be {ACCEPTED}; got a non-contiguous memoryview", what)
        buf = np.frombuffer(mem, dtype=np.uint8) if len(mem) else np.zeros(0, dtype=np.uint8)
        return buf, isinstance(mem, bytearray) or (isinstance(mem, memoryview) and not mem.readonly)
    raise ConfigError(f"must be {ACCEPTED}; got {_describe(mem)}", what)


def check_ctx_size(ptype, nbytes: int, what: str = "mem", min_size: int | None = None) -> None:
    """The program type's context size; Config.mem_size (the minimum a verified raw program relies on)."""
    if ptype.ctx_size is not None and nbytes != ptype.ctx_size:
        raise ConfigError(f"a {ptype.name} program's context is {ptype.ctx} of {ptype.ctx_size} bytes; got "
                          f"{nbytes} bytes", what)
    if min_size is not None and nbytes < min_size:
        raise RuntimeFault("mem_size", 0, f"{FAULT_MESSAGES['mem_size']}: {what} has {nbytes} bytes, "
                           f"Config.mem_size is {min_size} (checked before the program starts)")


def ctx_buffer(ptype, mem, readonly: bool, min_size: int | None = None) -> tuple[np.ndarray | None, int]:
    """(context buffer or None, permissions) of one run: the checks both engines share. Bytes are copied
    into a private writable buffer (the program may store into its mem; `VM.last_mem` shows it)."""
    if mem is None:
        if ptype.ctx_size is not None:
            raise ConfigError(f"a {ptype.name} program needs its context ({ptype.ctx}, {ptype.ctx_size} bytes)",
                              "mem")
        check_ctx_size(ptype, 0, "mem", min_size)
        return None, PERM_RW
    buf, writable = as_bytes_view(mem)
    check_ctx_size(ptype, buf.size, "mem", min_size)
    if isinstance(mem, bytes):
        buf, writable = buf.copy(), True
    return buf, PERM_R if readonly or ptype.ctx_readonly or not writable else PERM_RW


def records_view(ptype, records, readonly: bool, min_size: int | None = None) -> tuple[np.ndarray, int]:
    """(2-D uint8 view with one row per record, permissions) for run_batch; ConfigError for other input."""
    if not isinstance(records, np.ndarray):
        raise ConfigError(f"must be a C-contiguous numpy array with one record per row (2-D uint8 or 1-D "
                          f"structured); got {_describe(records)}", "records")
    if records.ndim == 0:
        raise ConfigError("must have one record per row; got a 0-d array", "records")
    as_bytes_view(records, "records")
    n = len(records)
    if n > MAX_BATCH:
        raise ConfigError(f"at most {MAX_BATCH} records per batch; got {n}", "records")
    # the row size from the shape (C-contiguous: checked above); strides[0] is arbitrary for a single row
    stride = records.dtype.itemsize * int(np.prod(records.shape[1:], dtype=np.int64))
    if n and stride <= 0:
        raise ConfigError("records must have a positive record size", "records")
    check_ctx_size(ptype, stride, "records", min_size if n else None)
    flat = records.reshape(n, -1).view(np.uint8).reshape(n, stride) if n else np.zeros((0, 0), np.uint8)
    return flat, PERM_R if readonly or ptype.ctx_readonly or not records.flags.writeable else PERM_RW


def used_maps_of(prepared) -> frozenset | None:
    """Descriptor addresses of the maps a prepared program was loaded with (the kernel's used_maps), which
    its map helpers may reach. None (any live map) for a program that uses a map-in-map outer map: its inner
    maps change at run time (the kernel trusts the verifier's map_ptr from the lookup instead)."""
    d = prepared.__dict__
    if "_used_map_addrs" not in d:
        d["_used_map_addrs"] = None if any(getattr(m, "outer", False) for m in prepared.used_maps) else \
            frozenset(m.desc_addr for m in prepared.used_maps)
    return d["_used_map_addrs"]


def check_count(n, what: str, limit: int) -> int:
    """A run count from the caller: an int in 0..limit, else ConfigError."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ConfigError(f"must be an int; got {type(n).__name__}", what)
    if not 0 <= int(n) <= limit:
        raise ConfigError(f"must be in 0..{limit}; got {n}", what)
    return int(n)


def _map_span(name: str, m, region: Region) -> Span:
    """How a fault message names a region of map storage: the map and what its storage holds."""
    if getattr(m, "map_type", "") == "ringbuf":
        return Span(f"ringbuf:{name}", f"ring buffer '{name}'", region.start, region.end, region.perms)
    vs, n = getattr(m, "value_size", 0), getattr(m, "max_entries", 0)
    stride, copies = getattr(m, "stride", vs), getattr(m, "ncpus", 1) if getattr(m, "percpu", False) else 1
    detail = f"{n} value{'s' if n != 1 else ''} of {vs} bytes" if vs else ""
    if vs and stride != vs:
        detail += f" in {stride}-byte slots"
    if vs and copies > 1:
        detail += f", {copies} per-cpu copies each"
    return Span(f"map:{name}", f"map '{name}'", region.start, region.end, region.perms, False, detail)


class RunSetup(NamedTuple):
    buf: np.ndarray | None      # the context buffer (None: no mem)
    perms: int                  # its permissions
    aspace: AddressSpace
    r1: int
    r2: int


class RunEnv:
    """The run environment of one prepared program (pipeline.Prepared): its stack, the runtime's regions,
    address spaces and helper contexts. Both engines hold one and build every run through it."""

    def __init__(self, prepared):
        self.prepared = prepared
        self.ptype = prepared.ptype
        self.runtime = prepared.runtime
        cfg = prepared.config
        self.stack_bytes = cfg.stack_size * cfg.max_call_depth
        self.min_size = cfg.mem_size

    def stack(self) -> Region:
        return thread_stack(self.stack_bytes)

    def runtime_regions(self):
        return self.runtime.regions() if self.runtime is not None else ()

    def address_space(self, ctx_region: Region | None) -> AddressSpace:
        aspace = AddressSpace()
        if ctx_region is not None:
            aspace.add(ctx_region)
        aspace.add(self.stack())
        for r in self.runtime_regions():
            aspace.add(r)
        ctx_name = ctx_region.name if ctx_region is not None else "mem"

        def locate(kind: str, addr: int, size: int) -> Where:
            return self.locate(kind, addr, size, [(r.start, r.end, r.perms) for r in aspace.regions], ctx_name)
        aspace.locate = locate
        return aspace

    # ---- fault messages: what each region of a run is ----
    def locate(self, kind: str, addr: int, size: int, rows, ctx_name: str = "mem") -> Where:
        """Where a faulting access went (faultinfo.describe_access) among the run's regions `rows`
        ((start, end, perms) each: an address space's regions, or the JIT's region table); a row that is not
        the stack or map storage is the context, called `ctx_name` ("mem", or "record" in a batch) for raw
        programs. Both engines describe their memory faults through this."""
        return describe_access(kind, addr, size, self.spans(rows, ctx_name))

    def spans(self, rows, ctx_name: str = "mem") -> list[Span]:
        known = {(s.start, s.end): s for s in self._known_spans()}
        out, seen = [], set()
        for start, end, perms in rows:
            start, end, perms = int(start), int(end), int(perms)
            if end <= start or (start, end) in seen:
                continue
            seen.add((start, end))
            span = known.get((start, end)) or self._ctx_span(ctx_name, start, end, perms)
            out.append(span._replace(perms=perms))
        return out

    def _known_spans(self) -> list[Span]:
        st = self.stack()
        cfg = self.prepared.config
        spans = [Span("stack", "stack", st.start, st.end, st.perms, True,
                      f"Config.max_call_depth {cfg.max_call_depth} frames of Config.stack_size {cfg.stack_size} bytes")]
        if self.runtime is not None:
            spans += [_map_span(name, m, r) for name, m, r in self.runtime.map_regions()]
        return spans

    def _ctx_span(self, ctx_name: str, start: int, end: int, perms: int) -> Span:
        if self.ptype.ctx_size is None:           # a bare buffer ("raw"): mem, or a batch's record
            return Span(ctx_name, ctx_name, start, end, perms)
        struct = self.ptype.ctx.split(" (")[0].removeprefix("struct ")
        return Span("ctx", f"ctx ({struct})", start, end, perms)

    def helper_ctx(self, aspace) -> HelperContext:
        p = self.prepared
        return HelperContext(aspace, p.program, p.runtime, config=p.config, used_maps=used_maps_of(p))

    def ctx_region(self, buf: np.ndarray | None, perms: int, name: str = "mem") -> Region | None:
        return Region(name, buf, perms) if buf is not None else None

    def open(self, mem, readonly: bool) -> "RunSetup":
        """Everything one run over the caller's `mem` needs: the checked context buffer and its permissions,
        the address space and the entry registers (both engines' run and bench start here)."""
        buf, perms = ctx_buffer(self.ptype, mem, readonly, self.min_size)
        region = self.ctx_region(buf, perms)
        r1, r2 = self.entry_regs(region)
        return RunSetup(buf, perms, self.address_space(region), r1, r2)

    def entry_regs(self, region: Region | None) -> tuple[int, int]:
        """(r1, r2) at entry for a run whose context is `region`."""
        if region is None or not region.size:
            return 0, 0
        return region.start, region.size if self.ptype.r2_is_len else 0
