"""Redirect target maps of XDP programs: `DevMap` (devmap: slot -> ifindex), `DevMapHash` (devmap_hash: key ->
ifindex), `CpuMap` (cpumap: cpu -> queue size) and `XskMap` (xskmap: queue -> AF_XDP socket). They store
like array / hash maps (u32 values; 8-byte values as struct bpf_devmap_val / bpf_cpumap_val hold the
same u32 first), so programs may look entries up; `bpf_redirect_map` (helpers/packet.py) sends a packet
to an entry whose u32 is non-zero and records it in the run's redirects. Nothing here runs programs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .array import ArrayMap
from .hash import HashMap


class _Target:
    """The u32 an entry holds (0: no target there), None when the key is absent or out of range."""
    if TYPE_CHECKING:       # a mixin: every other attribute is the map class's
        def __getattr__(self, name: str) -> Any: ...

    def target(self, key: int) -> int | None:
        if self.kind_is_array and not 0 <= key < self.max_entries:
            return None
        v = self.get(key.to_bytes(self.key_size, "little"))
        if v is None:
            return None
        if isinstance(v, (int, np.integer)):           # a map with a numpy / BTF value type
            t = int(v) & 0xFFFFFFFF
        elif isinstance(v, (bytes, bytearray, memoryview)):
            t = int.from_bytes(bytes(v)[:4], "little")
        else:                                            # a numpy record / array value
            t = int.from_bytes(np.ascontiguousarray(v).reshape(-1).view(np.uint8).tobytes()[:4], "little")
        return t or None


class DevMap(_Target, ArrayMap):
    map_type = "devmap"
    kind_is_array = True


class DevMapHash(_Target, HashMap):
    map_type = "devmap_hash"
    kind_is_array = False


class CpuMap(_Target, ArrayMap):
    map_type = "cpumap"
    kind_is_array = True


class XskMap(_Target, ArrayMap):
    map_type = "xskmap"
    kind_is_array = True
