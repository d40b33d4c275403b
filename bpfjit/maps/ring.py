"""Output maps drained by Python: `RingBufMap` (BPF ring buffer: reserve/submit/discard/output/query) and
`PerfEventArrayMap` (one ring per cpu, written by perf_event_output).

Both use the record format of layout.py (8-byte header, records padded to 8 bytes, never wrapping) and
the native ring code of native.py; `drain_ring` here is the consumer: it returns the submitted records in
order, skips discarded ones, and stops at a record still reserved (busy), as the kernel's consumer does.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ..memory import PERM_RW, Region
from . import arena
from . import layout as L
from .base import MapBase, MapError, storage
from . import lib as _lib


def _power_of_two(n: int, what: str) -> int:
    if n < 16 or n & (n - 1) or n > L.RB_MAX_SIZE:
        raise ValueError(f"{what} must be a power of two between 16 and {L.RB_MAX_SIZE}, got {n}")
    return n


def drain_ring(ctl: np.ndarray, data: np.ndarray) -> list[bytes]:
    """Consume the records of one ring (ctl: its u64 control block; data: its uint8 data area)."""
    size = len(data)
    words = data.view(np.uint32)
    cons, prod = int(ctl[L.CTL_CONS]), int(ctl[L.CTL_PROD])
    out = []
    while cons < prod:
        off = cons & (size - 1)
        hdr = int(words[off // 4])
        if hdr & L.RB_BUSY:
            break
        ln = hdr & L.RB_LEN_MASK
        total = L.round8(ln + L.RB_HDR)
        if off + total > size:          # a program overwrote the header: drop what is left
            cons = prod
            break
        if not hdr & L.RB_DISCARD:
            out.append(data[off + L.RB_HDR:off + L.RB_HDR + ln].tobytes())
        cons += total
    ctl[L.CTL_CONS] = cons
    return out


def skip_ring(ctl: np.ndarray) -> None:
    """Consume everything up to the producer position. Records still being written are skipped too; their
    commit then only flips header bits in space the producer may reuse, which drain_ring tolerates."""
    ctl[L.CTL_CONS] = ctl[L.CTL_PROD]


class RingBufMap(MapBase):
    map_type = "ringbuf"
    kind = L.KIND_RINGBUF

    def __init__(self, size: int = 4096, *, name: str | None = None):
        super().__init__(0, 0, _power_of_two(size, "ring buffer size"), name=name)
        self.size = size
        self._data = storage(size)
        self._region = Region(f"ringbuf:{name or 'ringbuf'}", self._data, PERM_RW)
        self._fill(DATA=self._data.ctypes.data, DATA_SIZE=size)
        c = L.FIELDS["RING_CTL"]
        self._ctl = self.desc[c:c + L.CTL_SLOTS]
        self._lock = threading.Lock()
        row = arena.add_ring(self._region.start, self._region.end, self.desc_addr)
        weakref.finalize(self, arena.remove_ring, row)
        self._publish()

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if key_size or value_size:
            raise ValueError("ringbuf maps have key_size and value_size 0")
        return cls(max_entries, **kw)

    def regions(self) -> list[Region]:
        return [self._region]

    def drain(self) -> list[bytes]:
        """The submitted records not consumed yet, oldest first (discarded ones are skipped)."""
        with self._lock:
            return drain_ring(self._ctl, self._data)

    def __iter__(self):
        yield from self.drain()

    def clear(self) -> None:
        """Drop every record not consumed yet (a consumer skipping to the producer)."""
        with self._lock:
            skip_ring(self._ctl)

    def output(self, data: bytes, flags: int = 0) -> None:
        """bpf_ringbuf_output from Python; MapError EAGAIN when there is no room."""
        data = bytes(data)
        rc = self.lib.py_rb_output(self.desc_addr, data, len(data), flags)
        if rc:
            raise MapError(-rc, f"ringbuf output of {len(data)} bytes")

    def query(self, what: str | int = "avail_data") -> int:
        return self.lib.rb_query(self.desc_addr, L.RB_QUERY.get(what, what) if isinstance(what, str) else what)

    @property
    def dropped(self) -> int:
        """Records ringbuf_output could not write (no room)."""
        return int(self._ctl[L.CTL_LOST])


class PerfEventArrayMap(MapBase):
    map_type = "perf_event_array"
    kind = L.KIND_PERF

    def __init__(self, max_entries: int | None = None, *, buf_size: int = 64 * 1024, name: str | None = None,
                 ncpus: int | None = None):
        ncpus = ncpus or _lib.NCPUS
        n = max_entries or ncpus
        super().__init__(4, 4, n, name=name, ncpus=ncpus)
        self.buf_size = _power_of_two(buf_size, "perf buffer size")
        self._data = storage(n * buf_size)
        self._ctl = np.zeros(n * L.CTL_SLOTS, dtype=np.uint64)
        self._lock = threading.Lock()
        self._fill(DATA=self._data.ctypes.data, DATA_SIZE=n * buf_size, PERF_CTL=self._ctl.ctypes.data,
                   PERF_BUF=buf_size)
        self._publish()

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if (key_size, value_size) != (4, 4):
            raise ValueError("perf_event_array maps have 4-byte keys and values")
        return cls(max_entries, **kw)

    def _ring(self, cpu: int):
        ctl = self._ctl[cpu * L.CTL_SLOTS:(cpu + 1) * L.CTL_SLOTS]
        return ctl, self._data[cpu * self.buf_size:(cpu + 1) * self.buf_size]

    def drain(self) -> list[tuple[int, bytes]]:
        """(cpu, record) of every record not consumed yet, cpu by cpu, oldest first."""
        with self._lock:
            return [(cpu, rec) for cpu in range(self.max_entries) for rec in drain_ring(*self._ring(cpu))]

    def __iter__(self):
        yield from self.drain()

    def clear(self) -> None:
        """Drop every record not consumed yet, on every cpu."""
        with self._lock:
            for cpu in range(self.max_entries):
                skip_ring(self._ring(cpu)[0])

    def output(self, data: bytes, cpu: int = L.F_CURRENT_CPU) -> None:
        """perf_event_output from Python into `cpu`'s ring (default: the calling thread's cpu)."""
        data = bytes(data)
        rc = self.lib.py_perf_output(self.desc_addr, cpu, data, len(data))
        if rc:
            raise MapError(-rc, f"perf event output of {len(data)} bytes")

    @property
    def lost(self) -> list[int]:
        """Records dropped per cpu because that cpu's ring was full."""
        return [int(self._ring(cpu)[0][L.CTL_LOST]) for cpu in range(self.max_entries)]
