"""Map-in-map: `ArrayOfMapsMap` and `HashOfMapsMap`, outer maps whose values are other maps.

An outer map is an array or hash map (same descriptor kinds, same native operations) whose 8-byte values
hold inner map descriptor addresses (0: no map); its storage is not a region programs may touch. Every
inner map must match the outer map's inner template (`InnerTemplate`: map type, key and value sizes).
`bpf_map_lookup_elem(outer, &key)` returns the inner map pointer itself (NULL when there is none), usable
as the map argument of further map helpers; both engines dereference the slot the same way
(helpers/map_helpers.py, emit.py). Programs may only look up outer maps (update/delete: -EINVAL), as in
the kernel. The outer map keeps its inner maps alive and reports their regions as its own, so an inner map
reached through an outer map is part of every runtime the outer map is in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ctypes
from dataclasses import dataclass

from ..memory import Region
from . import arena
from . import layout as L
from .array import ArrayMap
from .base import MapBase, MapError
from .hash import HashMap

OUTER_TYPES = ("array_of_maps", "hash_of_maps")


@dataclass(frozen=True)
class InnerTemplate:
    """What every inner map of an outer map must be (the kernel's inner_map_meta); the verifier sees the
    lookup result of an outer map as a map of this shape."""
    map_type: str
    key_size: int
    value_size: int
    max_entries: int = 1

    @classmethod
    def of(cls, inner) -> "InnerTemplate":
        if isinstance(inner, InnerTemplate):
            return inner
        if isinstance(inner, MapBase):
            return cls(inner.map_type, inner.key_size, inner.value_size, inner.max_entries)
        if isinstance(inner, dict):
            return cls(**inner)
        raise TypeError(f"inner map template must be a map, an InnerTemplate or a dict, not {type(inner).__name__}")

    def matches(self, m) -> bool:
        return (m.map_type, m.key_size, m.value_size) == (self.map_type, self.key_size, self.value_size)


class _Outer:
    """Shared behaviour of the outer map classes (mixed in before ArrayMap / HashMap)."""

    outer = True
    if TYPE_CHECKING:       # a mixin: every other attribute is the map class's (ArrayMap / HashMap)
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, key_size=4, value_size=8, max_entries: int = 1, *, inner=None, name=None, flags: int = 0,
                 key_type=None):
        if inner is None:
            raise ValueError(f"{self.map_type} needs an inner map template (inner=map or InnerTemplate)")
        self.inner = InnerTemplate.of(inner)
        if self.inner.map_type in OUTER_TYPES:
            raise ValueError("nested map-in-map (an outer map as inner template) is not supported")
        self._inner_maps: dict[bytes, MapBase] = {}
        super().__init__(key_size, 8, max_entries, name=name, flags=flags,  # type: ignore[call-arg]
                         key_type=key_type)

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if value_size not in (4, 8):
            raise ValueError(f"{cls.map_type} values are map references (value_size 4), not {value_size} bytes")
        return cls(key_size, 8, max_entries, **kw)

    def regions(self) -> list[Region]:
        seen, out = set(), []
        for m in list(self._inner_maps.values()):
            for r in m.regions():
                if id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
        return out

    def direct_value_addr(self, off: int):
        return None

    @property
    def values(self):
        raise AttributeError(f"{self.map_type} values are maps: use outer[key]")

    def _read_value(self, addr: int):
        return arena.map_at(ctypes.c_uint64.from_address(addr).value)

    def update(self, key, inner, flags: int = L.BPF_ANY) -> None:
        """Put map `inner` at `key`; MapError EINVAL if it does not match the inner template."""
        if not isinstance(inner, MapBase):
            raise TypeError(f"{self.map_type} values are maps, not {type(inner).__name__}")
        if not self.inner.matches(inner):
            t = self.inner
            raise MapError(L.EINVAL, f"{self!r}: inner map {inner!r} ({inner.map_type}, key_size {inner.key_size}, "
                           f"value_size {inner.value_size}) does not match the inner map template ({t.map_type}, "
                           f"key_size {t.key_size}, value_size {t.value_size})")
        kraw = self._key(key)
        super().update(kraw, inner.desc_addr, flags)  # type: ignore[misc]  # ArrayMap / HashMap (mixin)
        self._inner_maps[kraw] = inner

    def __setitem__(self, key, inner) -> None:
        self.update(key, inner)


class ArrayOfMapsMap(_Outer, ArrayMap):
    """`BPF_MAP_TYPE_ARRAY_OF_MAPS`: u32 index -> map (slots start empty; `del outer[i]` empties one)."""
    map_type = "array_of_maps"

    def __getitem__(self, key):
        m = self.get(key)
        if m is None:
            raise KeyError(key)
        return m

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __delitem__(self, key) -> None:
        kraw = self._key(key)
        if self._inner_maps.get(kraw) is None:
            raise KeyError(key)
        ArrayMap.update(self, kraw, 0)
        del self._inner_maps[kraw]

    def __len__(self) -> int:
        return len(self._inner_maps)

    def __iter__(self):
        return iter([k for k in ArrayMap.__iter__(self) if self.get(k) is not None])


class HashOfMapsMap(_Outer, HashMap):
    """`BPF_MAP_TYPE_HASH_OF_MAPS`: key -> map."""
    map_type = "hash_of_maps"

    def __delitem__(self, key) -> None:
        kraw = self._key(key)
        HashMap.__delitem__(self, kraw)
        self._inner_maps.pop(kraw, None)
