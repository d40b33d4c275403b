"""`Runtime`: the kernel side shared by the VMs of one application: maps (by fd and by name), lddw map
resolution, the regions of map storage programs may touch, the helper registry its VMs use, load-time checks
(license of GPL-only helpers, kern_version of kprobe programs), the trace buffer and the event output.

Also here: `EventRing` (the output ring a kprobe run stores kept events in, the host drains it) and
`KprobeProgram` (a kprobe program fired on pt_regs records, one at a time or in a native batch).
Map types live in maps/, helper implementations in helpers/, program types in progtypes.py; this module only
keeps the tables that tie them to programs. A VM created with `runtime=` resolves its lddw src 1/2/5/6 here,
adds these regions to its address space and calls `check_program` before compiling.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any

import numpy as np

from .errors import LoadError
from .helpers import runtime_registry
from .helpers.trace import TRACE
from .helpers.registry import GPL_COMPATIBLE, license_is_gpl_compatible  # noqa: F401 (re-exported)
from .progtypes import prog_type

FIRST_FD = 3          # map fds start here (0..2 look like stdio, as in the kernel)
EVENTS_CAPACITY = 1 << 20     # records an EventRing holds before it drops (and counts) new ones


def kernel_version(major: int, minor: int, patch: int = 0) -> int:
    """LINUX_VERSION_CODE / KERNEL_VERSION(a, b, c)."""
    return (major << 16) + (minor << 8) + min(patch, 255)


def host_kern_version() -> int:
    """KERNEL_VERSION of the running kernel (os.uname().release), 0 if it cannot be parsed."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
    return kernel_version(int(m[1]), int(m[2]), int(m[3] or 0)) if m else 0


class Runtime:
    """`kern_version` is the "running kernel" kprobe programs must have been built for (default: the
    host's); `helpers` the registry of its VMs (default: the built-in and map helpers)."""

    def __init__(self, config=None, helpers=None, kern_version: int | None = None,
                 events_capacity: int = EVENTS_CAPACITY):
        from .program import DEFAULT_CONFIG
        self.config = config or DEFAULT_CONFIG
        self.helpers = helpers or runtime_registry()
        self.kern_version = host_kern_version() if kern_version is None else kern_version
        self.trace = TRACE                          # one trace buffer per process, like trace_pipe
        self.events = EventRing(events_capacity)
        self._maps: dict[int, Any] = {}            # fd -> map
        self._names: dict[str, int] = {}           # name -> fd
        self._lock = threading.Lock()
        self._regions_cache = None

    # ---- maps ----
    def add_map(self, m, name: str | None = None) -> int:
        """Register a map; returns its fd (what `lddw map_fd(N)` refers to)."""
        with self._lock:
            fd = FIRST_FD + len(self._maps)
            self._maps[fd] = m
            name = name or getattr(m, "name", None)
            if name:
                self._names[name] = fd
            self._regions_cache = None
        return fd

    def map(self, key):
        """A map by fd or by name."""
        fd = self._names.get(key) if isinstance(key, str) else key
        m = self._maps.get(fd)
        if m is None:
            raise KeyError(f"no map {key!r}")
        return m

    def fd_of(self, name: str) -> int:
        return self._names[name]

    @property
    def maps(self) -> dict[str, object]:
        return {n: self._maps[fd] for n, fd in self._names.items()}

    def regions(self):
        r = self._regions_cache
        if r is None:
            r = self._regions_cache = [reg for m in self._maps.values() for reg in m.regions()]
        return r

    def map_regions(self) -> list[tuple[str, object, object]]:
        """(name, map, region) for every region of map storage (fault messages name the map a region belongs
        to); the name the map was added under, else its own name, else "fd N"."""
        names = {fd: n for n, fd in self._names.items()}
        return [(names.get(fd) or getattr(m, "name", None) or f"fd {fd}", m, reg)
                for fd, m in list(self._maps.items()) for reg in m.regions()]

    def invalidate_regions(self) -> None:
        """Call when a map's storage changes (e.g. a ring buffer grows)."""
        self._regions_cache = None

    # ---- programs ----
    def check_program(self, program, helpers=None) -> None:
        """Load-time checks that need the runtime, in the kernel's order: a known program type; kprobe
        programs built for this kernel (kern_version); GPL-only helpers (of `helpers`, default this runtime's
        registry) only from GPL-compatible programs (LoadError at the call). callx may reach any registered
        helper, so it counts as calling each."""
        ptype = prog_type(program.prog_type)
        if ptype.needs_kern_version and program.kern_version != self.kern_version:
            raise LoadError(f"{ptype.name} program built for kernel version {program.kern_version:#x}, "
                            f"this runtime is {self.kern_version:#x} (pass kern_version=rt.kern_version when "
                            "assembling or loading it, or set Program.kern_version)", None, "kern_version")
        if license_is_gpl_compatible(program.license):
            return
        for pc, f in enumerate(program.forms):
            if f is None or f.op not in ("call", "call_btf", "callx"):
                continue
            gpl = [h.name for h in self._reachable(f.op, program.insns[pc].imm, helpers or self.helpers)
                   if h.gpl_only]
            if gpl:
                raise LoadError(f"cannot call GPL-restricted function {', '.join(gpl)} from a program with "
                                f"license {program.license!r} (not GPL-compatible)", pc, "imm")

    @staticmethod
    def _reachable(op: str, imm: int, helpers) -> list:
        """The helpers a call instruction may reach (unknown ids are the pipeline's LoadError)."""
        if op == "callx":
            return list(helpers)
        h = helpers.get(imm) if op == "call" else helpers.get_btf(imm)
        return [h] if h is not None else []

    def assemble(self, text: str, **meta):
        """Program.from_asm with this runtime's helper names and maps: `map(NAME)` names any map added
        here (Program.maps lists them in fd order). `meta`: name, license, kern_version, prog_type ..."""
        from .program import assemble
        names = [n for _, n in sorted((fd, n) for n, fd in self._names.items())]
        prog = assemble(text, helpers=self.helpers.names(), maps=names, config=self.config, **meta)
        prog.maps = names
        return prog

    def kprobe(self, program, engine: str = "jit", config=None) -> "KprobeProgram":
        return KprobeProgram(self, program, engine, config)

    def trace_lines(self) -> list[str]:
        """Consume the trace buffer (trace_pipe) as lines."""
        return self.trace.read_lines()

    def resolve_lddw(self, program, pc: int, src: int, imm: int, next_imm: int) -> int:
        """Value of an lddw pseudo instruction: map descriptor address (src 1, 5) or map value address
        (src 2, 6: value of key 0 of an array map plus next_imm)."""
        return self.resolve_lddw_map(program, pc, src, imm, next_imm)[0]

    def resolve_lddw_map(self, program, pc: int, src: int, imm: int, next_imm: int):
        """(value, map) of an lddw pseudo instruction (see resolve_lddw)."""
        from .isa import LDDW_MAP_FD, LDDW_MAP_IDX, LDDW_MAP_IDX_VALUE, LDDW_MAP_VALUE
        if src in (LDDW_MAP_FD, LDDW_MAP_VALUE):
            m = self._maps.get(imm)
            if m is None:
                raise LoadError(f"lddw refers to map fd {imm}, which does not exist", pc, "imm")
        elif src in (LDDW_MAP_IDX, LDDW_MAP_IDX_VALUE):
            maps = getattr(program, "maps", None) or []
            if not 0 <= imm < len(maps):
                raise LoadError(f"lddw refers to map index {imm}; the program has {len(maps)} maps", pc, "imm")
            m = maps[imm]
            if isinstance(m, str):
                m = self.map(m)
        else:
            raise LoadError(f"lddw with src {src} is not supported by this runtime", pc, "src")
        if src in (LDDW_MAP_FD, LDDW_MAP_IDX):
            return m.desc_addr, m
        addr = m.direct_value_addr(next_imm)
        if addr is None:
            raise LoadError(f"lddw map value: map {getattr(m, 'name', '?')} has no direct value at offset "
                            f"{next_imm}", pc, "imm")
        return addr, m


# ------------------------------------------------------------------------------------ event output
def _row_view(records) -> np.ndarray:
    """records (bytes, a numpy record, or an array of records) as a (n, record size) uint8 array, a view
    where possible."""
    if isinstance(records, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(records), dtype=np.uint8).reshape(1, -1)
    arr = np.ascontiguousarray(records)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    n = len(arr)
    return arr.reshape(n, -1).view(np.uint8) if n else np.zeros((0, 0), dtype=np.uint8)


class EventRing:
    """The output ring of kept events, oldest first; thread-safe. When full, new events are dropped and
    counted in `lost` (a perf buffer's behaviour)."""

    def __init__(self, capacity: int = EVENTS_CAPACITY):
        self.capacity = capacity
        self.lost = 0
        self._chunks: list[np.ndarray] = []
        self._count = 0
        self._lock = threading.Lock()

    def push(self, record) -> bool:
        """Store one event (bytes or a numpy record); False if the ring was full."""
        return self.push_many(_row_view(record).copy()) == 1

    def push_many(self, records, copy: bool = True) -> int:
        """Store events (an array of records, one per row); returns how many were stored. copy=False keeps
        a (n, size) uint8 array the caller will not touch again as is."""
        rows = _row_view(records)
        rows = rows.copy() if copy else rows
        with self._lock:
            room = max(0, self.capacity - self._count)
            kept = rows[:room]
            self.lost += len(rows) - len(kept)
            if len(kept):
                self._chunks.append(kept)
                self._count += len(kept)
        return len(kept)

    def __len__(self) -> int:
        return self._count

    def _take(self) -> list[np.ndarray]:
        with self._lock:
            chunks, self._chunks, self._count = self._chunks, [], 0
        return chunks

    def drain(self) -> list[bytes]:
        """Remove and return every event as bytes."""
        return [row.tobytes() for chunk in self._take() for row in chunk]

    def drain_array(self, dtype=None) -> np.ndarray:
        """Remove and return every event as one array: rows of uint8, or records of `dtype` (every event
        must then be dtype.itemsize bytes)."""
        chunks = self._take()
        sizes = {c.shape[1] for c in chunks}
        if len(sizes) > 1:
            raise ValueError(f"events of different sizes {sorted(sizes)} cannot form one array")
        width = sizes.pop() if sizes else (np.dtype(dtype).itemsize if dtype is not None else 0)
        rows = np.concatenate(chunks) if chunks else np.zeros((0, width), dtype=np.uint8)
        return rows if dtype is None else rows.reshape(-1).view(dtype)


# ------------------------------------------------------------------------------------ kprobe programs
class KprobeProgram:
    """A kprobe program bound to a runtime, the seed's trace_call_bpf: `fire(regs)` runs it on one pt_regs
    with the context read-only; r0 != 0 stores the event (the regs, or `record`) in `runtime.events`, 0
    drops it. `fire_batch` does the same over an array of pt_regs in one native call (JIT). A fire nested
    inside a running program of the same thread returns 0 and stores nothing (bpf_prog_active)."""

    def __init__(self, runtime: Runtime, program, engine: str = "jit", config=None):
        from .vm import VM
        ptype = prog_type(program.prog_type)
        if ptype.name != "kprobe":
            raise LoadError(f"program {program.name!r} has type {ptype.name!r}, not 'kprobe'")
        self.runtime = runtime
        self.ptype = ptype
        self.vm = VM(program, engine, config, runtime=runtime)

    def fire(self, regs, record=None) -> int:
        """Run once on regs (progtypes.pt_regs(), 168 bytes, read-only to the program); returns r0."""
        r0 = self.vm.run(regs, readonly=True)
        if r0:
            self.runtime.events.push(regs if record is None else record)
        return r0

    def fire_batch(self, regs: np.ndarray, records=None) -> np.ndarray:
        """Run once per pt_regs record (progtypes.pt_regs_array()); keeps regs[i] (or records[i]) whose
        r0 != 0. Returns the r0 array."""
        r0 = self.vm.run_batch(regs, readonly=True)
        kept = _row_view(regs if records is None else records)[r0 != 0]     # a copy
        self.runtime.events.push_many(kept, copy=False)
        return r0
