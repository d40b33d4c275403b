"""Base classes of the Python map API: `MapError`, `MapBase` (descriptor, name, regions, lifetime) and
`KeyValueMap` (the dict-like API of array and hash maps, calling the compiled map operations of lib.py,
with key/value conversion from bytes, ints, numpy and ctypes objects and typed results).

Map types are in array.py, hash.py, progarray.py and ring.py; the operations themselves in native.py.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import weakref

import numpy as np

from ..errors import BPFError
from ..memory import PERM_RW, Region
from . import arena
from . import layout as L
from .lib import NCPUS, lib, signed

_CTYPES = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)


class MapError(BPFError):
    """A map operation failed; `errno` is the kernel's error number (E2BIG, EEXIST, ENOENT ...)."""

    def __init__(self, err: int, message: str):
        self.errno = err
        super().__init__(f"{_errno.errorcode.get(err, err)}: {message}")


def _norm_type(t):
    """(kind, type, size) of a key/value type: ctypes type or anything numpy.dtype accepts; None."""
    if t is None:
        return None
    if isinstance(t, type) and issubclass(t, _CTYPES):
        return ("ctypes", t, ctypes.sizeof(t))
    dt = np.dtype(t)
    return ("numpy", dt, dt.itemsize)


def _size_of(size, typ, what: str) -> int:
    if typ is None:
        if size is None:
            raise ValueError(f"{what} size is required (or give a {what} type)")
        return int(size)
    if size is not None and int(size) != typ[2]:
        raise ValueError(f"{what} size {size} does not match the {what} type's size {typ[2]}")
    return typ[2]


def to_bytes(obj, size: int, typ, what: str) -> bytes:
    """The `size` bytes of a key or value given as bytes, a numpy/ctypes object, a value of `typ`, or an int
    (little-endian)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
    elif isinstance(obj, (np.ndarray, np.generic)):
        raw = obj.tobytes()
    elif isinstance(obj, _CTYPES):
        raw = bytes(obj)
    elif typ is not None:
        kind, t, _ = typ
        if kind == "numpy":
            raw = np.array(obj, dtype=t).tobytes()
        else:
            raw = bytes(t(*obj) if isinstance(obj, tuple) else t(obj))
    elif isinstance(obj, int):
        bits = 8 * size
        if not -(1 << (bits - 1)) <= obj < (1 << bits):
            raise ValueError(f"{what} {obj} does not fit in {size} bytes")
        raw = (obj & ((1 << bits) - 1)).to_bytes(size, "little")
    else:
        raise TypeError(f"{what} must be bytes, an int, a numpy or ctypes object, not {type(obj).__name__}")
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def from_bytes(raw: bytes, typ):
    if typ is None:
        return raw
    kind, t, _ = typ
    if kind == "numpy":
        return np.frombuffer(raw, dtype=t)[0]
    return t.from_buffer_copy(raw)


def storage(nbytes: int) -> np.ndarray:
    """Zeroed, 8-byte aligned storage that never moves (numpy allocations are at least 16-aligned)."""
    buf = np.zeros(max(nbytes, 8), dtype=np.uint8)
    assert buf.ctypes.data % 8 == 0
    return buf


class MapBase:
    """What every map has: a descriptor in the arena (its address is the map pointer programs use), a
    name, the regions programs may access, and the descriptor's release when the map is collected."""

    map_type = ""          # MAP_TYPES name; set by subclasses
    kind = 0

    def __init__(self, key_size: int, value_size: int, max_entries: int, *, name: str | None = None,
                 flags: int = 0, ncpus: int = 1):
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.name = name
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.ncpus = ncpus
        self.lib = lib()
        self._slot, self.desc = arena.alloc(self)
        self.desc_addr = self.desc.ctypes.data
        self._finalizer = weakref.finalize(self, arena.release, self._slot)
        self._fill(TYPE=L.MAP_TYPES[self.map_type], KIND=self.kind, KEY_SIZE=key_size, VALUE_SIZE=value_size,
                   MAX_ENTRIES=max_entries, MAP_FLAGS=flags, NCPUS=ncpus, STRIDE=L.round8(value_size))

    def _fill(self, **fields) -> None:
        for k, v in fields.items():
            self.desc[L.FIELDS[k]] = v & ((1 << 64) - 1)

    def _field(self, name: str) -> int:
        return int(self.desc[L.FIELDS[name]])

    def _publish(self) -> None:
        arena.publish(self, self.desc)

    def regions(self) -> list[Region]:
        """The memory programs may access through this map (added to a VM's address space by the Runtime)."""
        return []

    def direct_value_addr(self, off: int):
        return None

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return (f"<{type(self).__name__}{name} key_size={self.key_size} value_size={self.value_size} "
                f"max_entries={self.max_entries}>")


class KeyValueMap(MapBase):
    """Dict-like API over the native lookup/update/delete/get_next_key. Keys and values are accepted as
    bytes, ints (little-endian), numpy or ctypes objects of the declared size, or anything `key_type`/
    `value_type` (numpy dtype or ctypes type) converts; results are bytes unless those types are given.
    Per-cpu maps read a list of ncpus values and accept either such a list or one value for every cpu."""

    percpu = False

    def __init__(self, key_size=None, value_size=None, max_entries: int = 1, *, name=None, key_type=None,
                 value_type=None, flags: int = 0, ncpus: int | None = None):
        self.key_type = _norm_type(key_type)
        self.value_type = _norm_type(value_type)
        ks = _size_of(key_size, self.key_type, "key")
        vs = _size_of(value_size, self.value_type, "value")
        if ks <= 0 or vs <= 0:
            raise ValueError(f"key and value sizes must be positive (key {ks}, value {vs})")
        copies = (ncpus or NCPUS) if self.percpu else 1
        super().__init__(ks, vs, max_entries, name=name, flags=flags, ncpus=copies)
        self.stride = L.round8(vs)
        self._setup()
        self._publish()

    def _setup(self) -> None:
        """Allocate the storage and fill the kind-specific descriptor fields."""
        raise NotImplementedError

    # ---- conversions ----
    def _key_buf(self, key):
        return ctypes.create_string_buffer(to_bytes(key, self.key_size, self.key_type, "key"), self.key_size)

    def _value_buf(self, value):
        if not self.percpu:
            return ctypes.create_string_buffer(to_bytes(value, self.value_size, self.value_type, "value"),
                                               self.value_size)
        values = value if isinstance(value, list) else [value] * self.ncpus
        if len(values) != self.ncpus:
            raise ValueError(f"per-cpu value list must have {self.ncpus} entries, got {len(values)}")
        buf = ctypes.create_string_buffer(self.ncpus * self.stride)
        for c, v in enumerate(values):
            raw = to_bytes(v, self.value_size, self.value_type, "value")
            ctypes.memmove(ctypes.addressof(buf) + c * self.stride, raw, len(raw))
        return buf

    def _read_value(self, addr: int):
        if not self.percpu:
            return from_bytes(ctypes.string_at(addr, self.value_size), self.value_type)
        raw = ctypes.string_at(addr, self.ncpus * self.stride)
        return [from_bytes(raw[c * self.stride:c * self.stride + self.value_size], self.value_type)
                for c in range(self.ncpus)]

    def _error(self, rc: int, what: str) -> MapError:
        messages = {L.E2BIG: "map is full" if self.kind == L.KIND_HASH else "index out of range",
                    L.EEXIST: "key already exists", L.ENOENT: "no such key", L.EINVAL: "invalid argument",
                    L.ENOMEM: "out of entries"}
        return MapError(-rc, f"{what} on {self!r}: {messages.get(-rc, os.strerror(-rc))}")

    # ---- operations ----
    def _lookup_addr(self, key) -> int:
        buf = self._key_buf(key)
        return self.lib.lookup(self.desc_addr, ctypes.addressof(buf), 0, L.LOOKUP_NO_TOUCH)

    def __getitem__(self, key):
        addr = self._lookup_addr(key)
        if not addr:
            raise KeyError(key)
        return self._read_value(addr)

    def get(self, key, default=None):
        addr = self._lookup_addr(key)
        return self._read_value(addr) if addr else default

    def __contains__(self, key) -> bool:
        return bool(self._lookup_addr(key))

    def update(self, key, value, flags: int = L.BPF_ANY) -> None:
        """bpf_map_update_elem with flags BPF_ANY/BPF_NOEXIST/BPF_EXIST; raises MapError on failure."""
        kb, vb = self._key_buf(key), self._value_buf(value)
        rc = signed(self.lib.update(self.desc_addr, ctypes.addressof(kb), ctypes.addressof(vb), flags, L.CPU_ALL))
        if rc:
            raise self._error(rc, "update")

    def __setitem__(self, key, value) -> None:
        self.update(key, value)

    def __delitem__(self, key) -> None:
        kb = self._key_buf(key)            # kept alive across the call
        rc = signed(self.lib.delete(self.desc_addr, ctypes.addressof(kb)))
        if rc == -L.ENOENT:
            raise KeyError(key)
        if rc:
            raise self._error(rc, "delete")

    def _next_raw(self, raw: bytes | None) -> bytes | None:
        out = ctypes.create_string_buffer(self.key_size)
        kb = ctypes.create_string_buffer(raw, self.key_size) if raw is not None else None
        rc = signed(self.lib.get_next_key(self.desc_addr, ctypes.addressof(kb) if kb is not None else 0,
                                          ctypes.addressof(out)))
        if rc == -L.ENOENT:
            return None
        if rc:
            raise self._error(rc, "get_next_key")
        return out.raw

    def get_next_key(self, key=None):
        """The key after `key` (the first key if None or missing), or None at the end."""
        raw = None if key is None else to_bytes(key, self.key_size, self.key_type, "key")
        nxt = self._next_raw(raw)
        return None if nxt is None else from_bytes(nxt, self.key_type)

    def __iter__(self):
        raw = self._next_raw(None)
        seen = 0
        while raw is not None and seen <= self.max_entries:   # bounded even under concurrent changes
            yield from_bytes(raw, self.key_type)
            seen += 1
            raw = self._next_raw(raw)

    def keys(self) -> list:
        return list(self)

    def items(self) -> list:
        out = []
        for k in self:
            v = self.get(k)
            if v is not None:
                out.append((k, v))
        return out

    def clear(self) -> None:
        self.lib.clear(self.desc_addr)

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        return cls(key_size, value_size, max_entries, **kw)
