"""`QueueMap` (FIFO) and `StackMap` (LIFO): maps without keys, used through push/pop/peek (helpers 87-89
for programs). Values are copied in and out, so programs never point into their storage (no regions).
A full map refuses a push with E2BIG unless flags is BPF_EXIST, which drops the oldest element; popping
an empty map is ENOENT. The operations are native.py's bpfmap_push/bpfmap_pop.
"""
from __future__ import annotations

import ctypes

from . import layout as L
from .base import MapBase, MapError, _norm_type, _size_of, from_bytes, storage, to_bytes


class QueueMap(MapBase):
    map_type = "queue"
    kind = L.KIND_QUEUE

    def __init__(self, value_size=None, max_entries: int = 1, *, name: str | None = None, value_type=None,
                 flags: int = 0):
        self.value_type = _norm_type(value_type)
        vs = _size_of(value_size, self.value_type, "value")
        if vs <= 0:
            raise ValueError(f"value size must be positive, got {vs}")
        super().__init__(0, vs, max_entries, name=name, flags=flags)
        self.stride = L.round8(vs)
        self._slots = max_entries + 1
        self._data = storage(self._slots * self.stride)
        self._fill(DATA=self._data.ctypes.data, DATA_SIZE=self._slots * self.stride, SLOTS=self._slots)
        self._publish()

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if key_size:
            raise ValueError(f"{cls.map_type} maps have key_size 0")
        return cls(value_size, max_entries, **kw)

    def push(self, value, flags: int = L.BPF_ANY) -> None:
        rc = self.lib.py_push(self.desc_addr, to_bytes(value, self.value_size, self.value_type, "value"), flags)
        if rc:
            raise MapError(-rc, f"push on {self!r}: " + ("map is full" if rc == -L.E2BIG else "invalid flags"))

    def _pop(self, peek: int):
        out = ctypes.create_string_buffer(self.value_size)
        rc = self.lib.py_pop(self.desc_addr, out, peek)
        if rc:
            raise MapError(-rc, f"{'peek' if peek else 'pop'} on {self!r}: map is empty")
        return from_bytes(out.raw, self.value_type)

    def pop(self):
        """Remove and return the next element (oldest for a queue, newest for a stack)."""
        return self._pop(0)

    def peek(self):
        """The element pop would return, left in place."""
        return self._pop(1)

    def __len__(self) -> int:
        return (self._field("HEAD") - self._field("TAIL")) % self._slots

    def clear(self) -> None:
        self.lib.clear(self.desc_addr)


class StackMap(QueueMap):
    map_type = "stack"
