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
from ..memory import Region
from . import arena
from . import layout as L
from . import lib as _lib
from .lib import lib

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
        copies = (ncpus or _lib.NCPUS) if self.percpu else 1
        super().__init__(ks, vs, max_entries, name=name, flags=flags, ncpus=copies)
        self.stride = L.round8(vs)
        self._storage = self._setup()
        self._base = self._storage.ctypes.data
        self._mv = self._storage.data
        self._elem_bytes = self.ncpus * self.stride
        numpy_values = self.value_type is not None and self.value_type[0] == "numpy"
        self._typed = self._view(self.value_type[1]) if numpy_values else None
        self._publish()

    def _setup(self) -> np.ndarray:
        """Allocate the storage, fill the kind-specific descriptor fields; returns the value storage
        (max_entries elements of ncpus copies of STRIDE bytes)."""
        raise NotImplementedError

    def _view(self, dtype) -> np.ndarray:
        """Zero-copy view of the value storage: (max_entries[, ncpus]) elements of dtype, or with a last
        axis of value_size bytes when dtype is uint8 and not the value type."""
        lead = (self.max_entries, self.ncpus) if self.percpu else (self.max_entries,)
        strides = (self._elem_bytes, self.stride) if self.percpu else (self._elem_bytes,)
        if dtype is None:
            return np.ndarray(lead + (self.value_size,), dtype=np.uint8, buffer=self._storage,
                              strides=strides + (1,))
        return np.ndarray(lead, dtype=dtype, buffer=self._storage, strides=strides)

    # ---- conversions ----
    def _key(self, key) -> bytes:
        if self.key_type is None and type(key) is int and 0 <= key < 1 << (8 * self.key_size):
            return key.to_bytes(self.key_size, "little")
        return to_bytes(key, self.key_size, self.key_type, "key")

    def _value(self, value) -> bytes:
        """The value buffer of an update from Python: one value, or NCPUS values STRIDE bytes apart."""
        if not self.percpu:
            return to_bytes(value, self.value_size, self.value_type, "value")
        values = value if isinstance(value, list) else [value] * self.ncpus
        if len(values) != self.ncpus:
            raise ValueError(f"per-cpu value list must have {self.ncpus} entries, got {len(values)}")
        pad = bytes(self.stride - self.value_size)
        return b"".join(to_bytes(v, self.value_size, self.value_type, "value") + pad for v in values)

    def _read_value(self, addr: int):
        off = addr - self._base
        if self._typed is not None:
            v = self._typed[off // self._elem_bytes]
            if self.percpu:
                return [x.copy() if isinstance(x, np.void) else x for x in v]
            return v.copy() if isinstance(v, np.void) else v
        offs = [off + c * self.stride for c in range(self.ncpus)] if self.percpu else [off]
        vals = [from_bytes(bytes(self._mv[o:o + self.value_size]), self.value_type) for o in offs]
        return vals if self.percpu else vals[0]

    def _error(self, rc: int, what: str) -> MapError:
        messages = {L.E2BIG: "map is full" if self.kind == L.KIND_HASH else "index out of range",
                    L.EEXIST: "key already exists", L.ENOENT: "no such key", L.EINVAL: "invalid argument",
                    L.ENOMEM: "out of entries"}
        return MapError(-rc, f"{what} on {self!r}: {messages.get(-rc, os.strerror(-rc))}")

    # ---- operations ----
    def _lookup_addr(self, key) -> int:
        return self.lib.py_lookup(self.desc_addr, self._key(key), 0, L.LOOKUP_NO_TOUCH)

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
        rc = self.lib.py_update(self.desc_addr, self._key(key), self._value(value), flags, L.CPU_ALL)
        if rc:
            raise self._error(rc, "update")

    def __setitem__(self, key, value) -> None:
        self.update(key, value)

    def __delitem__(self, key) -> None:
        rc = self.lib.py_delete(self.desc_addr, self._key(key))
        if rc == -L.ENOENT:
            raise KeyError(key)
        if rc:
            raise self._error(rc, "delete")

    def _next_raw(self, raw: bytes | None) -> bytes | None:
        out = ctypes.create_string_buffer(self.key_size)
        rc = self.lib.py_get_next_key(self.desc_addr, raw, out)
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
