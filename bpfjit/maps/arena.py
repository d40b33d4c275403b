"""Where map descriptors live and how a descriptor address is recognised.

The descriptor arena is one numpy uint64 array of MAX_MAPS descriptors allocated at import, so it never
moves: a map pointer is valid exactly when it lies inside the arena, on a descriptor boundary, and that
descriptor's MAGIC word is set. Native code checks the same rule with the arena bounds (symbol
`bpfmap_arena_bounds` for program modules, constants in the runtime module); Python looks the address up
in the live table, which holds the same descriptors. The ring table lists the data areas of live ring
buffers, so ringbuf_submit/discard (which get only a record pointer) can validate it.
Map classes live in the other modules of this package; nothing here knows about map types.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from .layout import DESC_SLOTS, FIELDS, MAGIC, MAX_MAPS, MAX_RINGS

ARENA = np.zeros(MAX_MAPS * DESC_SLOTS, dtype=np.uint64)
ARENA_START = ARENA.ctypes.data
ARENA_END = ARENA_START + ARENA.nbytes
ARENA_BOUNDS = np.array([ARENA_START, ARENA_END], dtype=np.uint64)   # read by JIT code
# ring table: [rows used, then per row: data start, data end (0 = empty row), descriptor address]
RING_TABLE = np.zeros(1 + 3 * MAX_RINGS, dtype=np.uint64)

_lock = threading.RLock()       # re-entrant: a finalizer (release) may run during a GC inside alloc
_free = list(range(MAX_MAPS - 1, -1, -1))
_live: dict[int, weakref.ref] = {}


def alloc(owner) -> tuple[int, np.ndarray]:
    """A fresh (zeroed) descriptor for `owner`: (arena slot, uint64 view). MAGIC is set by `publish`."""
    with _lock:
        if not _free:
            raise MemoryError(f"too many live maps (at most {MAX_MAPS})")
        slot = _free.pop()
    desc = ARENA[slot * DESC_SLOTS:(slot + 1) * DESC_SLOTS]
    desc[:] = 0
    desc[FIELDS["SLOT"]] = slot
    return slot, desc


def publish(owner, desc: np.ndarray) -> None:
    """Make a fully initialised descriptor valid for helpers (both engines)."""
    with _lock:
        _live[desc.ctypes.data] = weakref.ref(owner)
    desc[FIELDS["MAGIC"]] = MAGIC


def release(slot: int) -> None:
    """Invalidate a descriptor (the map is gone) and return its slot."""
    base = slot * DESC_SLOTS
    ARENA[base + FIELDS["MAGIC"]] = 0
    with _lock:
        _live.pop(ARENA_START + base * 8, None)
        _free.append(slot)


def map_at(addr: int):
    """The live map whose descriptor is at `addr`, or None (the Python twin of the native check)."""
    ref = _live.get(addr)
    return ref() if ref is not None else None


def add_ring(start: int, end: int, desc_addr: int) -> int:
    """Register a ring data area; returns its row. Rows are written start first, end last."""
    with _lock:
        used = int(RING_TABLE[0])
        row = next((r for r in range(used) if RING_TABLE[2 + 3 * r] == 0), used)
        if row >= MAX_RINGS:
            raise MemoryError(f"too many live ring buffers (at most {MAX_RINGS})")
        RING_TABLE[1 + 3 * row] = start
        RING_TABLE[3 + 3 * row] = desc_addr
        RING_TABLE[2 + 3 * row] = end
        if row == used:
            RING_TABLE[0] = used + 1
    return row


def remove_ring(row: int) -> None:
    RING_TABLE[2 + 3 * row] = 0        # an empty row never matches (native code reads `end` first)
