"""Array maps: `ArrayMap` and `PercpuArrayMap` (u32 keys 0..max_entries-1, every element exists and
starts zeroed, delete is EINVAL). Values live in one numpy buffer that programs access directly
(`regions()`) and Python sees zero-copy through `.values`. The operations are native.py's.
"""
from __future__ import annotations

import numpy as np

from ..memory import PERM_R, PERM_RW, Region
from . import layout as L
from .base import KeyValueMap, storage


class ArrayMap(KeyValueMap):
    map_type = "array"
    kind = L.KIND_ARRAY

    def __init__(self, key_size=4, value_size=None, max_entries: int = 1, **kw):
        super().__init__(key_size, value_size, max_entries, **kw)

    def _setup(self) -> np.ndarray:
        if self.key_size != 4:
            raise ValueError(f"array map keys are 4-byte indexes, not {self.key_size} bytes")
        nbytes = self.max_entries * self.ncpus * self.stride
        data = storage(nbytes)
        self._region = Region(f"map:{self.name or self.map_type}", data[:nbytes], PERM_RW)
        self._fill(DATA=data.ctypes.data, DATA_SIZE=nbytes)
        return data

    def regions(self) -> list[Region]:
        return [self._region]

    def __len__(self) -> int:
        return self.max_entries

    def freeze(self) -> None:
        """Make the values read-only for programs (BPF_F_RDONLY_PROG, e.g. an object's .rodata): a store
        through a value pointer faults "store" in both engines. Takes effect for VMs created afterwards;
        Python writes through the map API stay possible."""
        self._region.perms = PERM_R
        self.frozen = True

    def direct_value_addr(self, off: int):
        """Address of element 0 + off if inside the value storage (lddw map_value), else None."""
        return self._region.start + off if 0 <= off < self._region.size else None

    @property
    def values(self) -> np.ndarray:
        """Zero-copy view of every value: (max_entries, value_size) uint8, (max_entries, ncpus,
        value_size) for per-cpu maps, or elements of the numpy value_type without the last axis."""
        numpy_values = self.value_type is not None and self.value_type[0] == "numpy"
        return self._view(self.value_type[1] if numpy_values else None)


class PercpuArrayMap(ArrayMap):
    map_type = "percpu_array"
    percpu = True
