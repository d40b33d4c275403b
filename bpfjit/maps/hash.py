"""Hash maps: `HashMap`, `PercpuHashMap`, `LruHashMap`, `LruPercpuHashMap`.

Storage is preallocated (max_entries entries): keys, values (the region programs access), and an int64
metadata buffer holding the bucket heads and the per-entry chain, free-list, hash and recency arrays
(layout.FIELDS names them). A full map refuses inserts with E2BIG, except LRU maps, which evict their
least recently used element (program lookups and every update count as a use; Python reads do not).
The operations are native.py's; this module only allocates and describes.
"""
from __future__ import annotations

import numpy as np

from ..memory import PERM_RW, Region
from . import layout as L
from .base import KeyValueMap, storage

META_ARRAYS = ("NEXT", "FNEXT", "HASHES", "LRU_PREV", "LRU_NEXT")   # i64[capacity] each, after BUCKETS


class HashMap(KeyValueMap):
    map_type = "hash"
    kind = L.KIND_HASH
    lru = False

    def _setup(self) -> np.ndarray:
        cap = self.max_entries
        nbuckets = 1 << max(0, (cap - 1).bit_length())
        kstride = L.round8(self.key_size)
        vbytes = cap * self.ncpus * self.stride
        self._keys = storage(cap * kstride)
        values = storage(vbytes)
        self._meta = storage(8 * (nbuckets + len(META_ARRAYS) * cap))
        base = self._meta.ctypes.data
        arrays = {"BUCKETS": base}
        for i, name in enumerate(META_ARRAYS):
            arrays[name] = base + 8 * (nbuckets + i * cap)
        self._region = Region(f"map:{self.name or self.map_type}", values[:vbytes], PERM_RW)
        self._fill(DATA=values.ctypes.data, DATA_SIZE=vbytes, LRU=int(self.lru), CAPACITY=cap,
                   KEY_STRIDE=kstride, KEYS=self._keys.ctypes.data, NBUCKETS=nbuckets, **arrays)
        self.lib.clear(self.desc_addr)
        return values

    def regions(self) -> list[Region]:
        return [self._region]

    def __len__(self) -> int:
        return self._field("COUNT")


class PercpuHashMap(HashMap):
    map_type = "percpu_hash"
    percpu = True


class LruHashMap(HashMap):
    map_type = "lru_hash"
    lru = True


class LruPercpuHashMap(HashMap):
    map_type = "lru_percpu_hash"
    lru = True
    percpu = True
