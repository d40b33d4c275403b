"""Memory regions at real host addresses, shared by both engines.

A `Region` is a numpy uint8 buffer (owned or borrowed) at its real address with read/write permissions.
An `AddressSpace` is the table of regions a run may touch: the program's mem/ctx, its stack, map storage
and buffers helpers hand out. The interpreter checks every access against it in Python; the JIT's checked
mode checks against `AddressSpace.table()` (a flat uint64 array of [start, end, perms] rows) in native
code. Both engines see the same addresses, so pointers a program computes are identical in both.
Nothing here knows about instructions or helpers.
"""
from __future__ import annotations

import struct
import threading
from typing import Iterable

import numpy as np

from .errors import Locate, RuntimeFault, memory_fault

PERM_R = 1
PERM_W = 2
PERM_RW = PERM_R | PERM_W

_UNPACK = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}
_UNPACK_S = {1: struct.Struct("<b"), 2: struct.Struct("<h"), 4: struct.Struct("<i"), 8: struct.Struct("<q")}


class Region:
    """A contiguous byte range at a real address."""
    __slots__ = ("name", "buf", "start", "end", "perms", "view")

    def __init__(self, name: str, buf: np.ndarray, perms: int = PERM_RW):
        self.name = name
        self.perms = perms
        self.rebind(buf)

    def rebind(self, buf: np.ndarray) -> None:
        """Point the region at another buffer (run_batch moves the record region from record to record)."""
        if buf.dtype != np.uint8 or buf.ndim != 1:
            buf = buf.reshape(-1).view(np.uint8)
        self.buf = buf
        self.start = buf.__array_interface__["data"][0] if buf.size else 0
        self.end = self.start + buf.size
        self.view = buf.data if buf.size else memoryview(b"")

    @property
    def size(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        p = ("r" if self.perms & PERM_R else "-") + ("w" if self.perms & PERM_W else "-")
        return f"Region({self.name!r}, {self.start:#x}..{self.end:#x}, {p})"


class AddressSpace:
    """The regions one run may access. Lookups cache the last region hit.

    `locate(kind, addr, size) -> errors.Where` describes a faulting access for the fault's message (set by
    runenv.RunEnv.address_space, which knows what each region is); None: the generic message."""

    def __init__(self, regions: Iterable[Region] = (), locate: Locate | None = None):
        self._regions: list[Region] = []
        self._lock = threading.Lock()
        self._table: np.ndarray | None = None
        self.locate = locate
        for r in regions:
            self.add(r)

    def add(self, region: Region) -> Region:
        if region.size:
            with self._lock:
                self._regions.append(region)
                self._table = None
        return region

    def remove(self, region: Region) -> None:
        with self._lock:
            self._regions = [r for r in self._regions if r is not region]
            self._table = None

    @property
    def regions(self) -> tuple[Region, ...]:
        return tuple(self._regions)

    def table(self) -> np.ndarray:
        """Flat uint64 array [start0, end0, perms0, start1, ...] for native bounds checks.

        At least two rows (empty rows never match): the JIT reads rows 0 and 1 unconditionally.
        """
        t = self._table
        if t is None:
            rows = [(r.start, r.end, r.perms) for r in self._regions]
            rows += [(0, 0, 0)] * max(0, 2 - len(rows))
            t = np.array(rows, dtype=np.uint64).reshape(-1)
            self._table = t
        return t

    def fault(self, kind: str, addr: int, size: int, pc: int = -1) -> RuntimeFault:
        """The RuntimeFault of a `kind` access that no region allows, described by `locate`."""
        where = self.locate(kind, addr, size) if self.locate is not None else None
        return memory_fault(kind, pc, addr, size, where)

    def find(self, addr: int, size: int, perm: int) -> Region | None:
        for r in self._regions:
            if r.start <= addr and addr + size <= r.end and r.perms & perm == perm:
                return r
        return None

    # ---- checked access used by the interpreter and by Python helpers ----
    def load(self, addr: int, size: int, pc: int = -1, signed: bool = False) -> int:
        r = self.find(addr, size, PERM_R)
        if r is None:
            raise self.fault("load", addr, size, pc)
        return (_UNPACK_S if signed else _UNPACK)[size].unpack_from(r.view, addr - r.start)[0]

    def store(self, addr: int, size: int, value: int, pc: int = -1) -> None:
        r = self.find(addr, size, PERM_W)
        if r is None:
            raise self.fault("store", addr, size, pc)
        _UNPACK[size].pack_into(r.view, addr - r.start, value & ((1 << (size * 8)) - 1))

    def read_bytes(self, addr: int, size: int, pc: int = -1) -> bytes | None:
        """Bytes at addr, or None if not all readable (helpers turn that into -EFAULT)."""
        if size == 0:
            return b""
        r = self.find(addr, size, PERM_R)
        if r is None:
            return None
        off = addr - r.start
        return bytes(r.view[off:off + size])

    def write_bytes(self, addr: int, data: bytes) -> bool:
        if not data:
            return True
        r = self.find(addr, len(data), PERM_W)
        if r is None:
            return False
        off = addr - r.start
        r.view[off:off + len(data)] = data
        return True

