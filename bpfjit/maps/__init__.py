"""BPF maps shared by both engines.

One descriptor layout (layout.py) in one arena (arena.py), map operations written once in LLVM IR
(native.py) and compiled once per process (lib.py); Python (the map classes and the interpreter's
helpers) and JIT code (helpers/map_helpers.py, emit.py) call the same compiled functions.

    create_map("hash", 4, 8, 1024)          or HashMap(4, 8, 1024, value_type=np.uint64)
    m[key] = value; m[key]; del m[key]; len(m); for k in m; m.items(); m.update(k, v, BPF_NOEXIST)
    ArrayMap(...).values                     zero-copy numpy view of the values
    RingBufMap(4096).drain()                 records submitted by programs
    ProgArrayMap(8, runtime)[0] = program    tail-call targets
    QueueMap(8, 16).push(v); q.pop()         FIFO (StackMap: LIFO)
    LpmTrieMap(8, 8, 64)["10.0.0.0/8"] = v    longest-prefix match (m["10.1.2.3"] -> v)
    DevMap(4, 4, 8)[0] = ifindex              XDP redirect targets (also CpuMap, XskMap, DevMapHash)
    ArrayOfMapsMap(max_entries=2, inner=ArrayMap(4, 4, 4))[0] = inner_map   map-in-map (also HashOfMapsMap)
"""
from __future__ import annotations

from typing import Any

from .array import ArrayMap, PercpuArrayMap
from .base import KeyValueMap, MapBase, MapError
from .hash import HashMap, LruHashMap, LruPercpuHashMap, PercpuHashMap
from .layout import BPF_ANY, BPF_EXIST, BPF_NOEXIST, MAP_TYPES
from .lib import current_cpu, set_default_ncpus
from .lpm import LpmTrieMap
from .mapinmap import ArrayOfMapsMap, HashOfMapsMap, InnerTemplate
from .progarray import ProgArrayMap
from .queuestack import QueueMap, StackMap
from .redirect import CpuMap, DevMap, DevMapHash, XskMap
from .ring import PerfEventArrayMap, RingBufMap

MAP_CLASSES: dict[str, Any] = {
    "array": ArrayMap, "percpu_array": PercpuArrayMap, "hash": HashMap, "percpu_hash": PercpuHashMap,
    "lru_hash": LruHashMap, "lru_percpu_hash": LruPercpuHashMap, "prog_array": ProgArrayMap,
    "ringbuf": RingBufMap, "perf_event_array": PerfEventArrayMap, "queue": QueueMap, "stack": StackMap,
    "lpm_trie": LpmTrieMap,
    "devmap": DevMap, "devmap_hash": DevMapHash, "cpumap": CpuMap, "xskmap": XskMap,
    "array_of_maps": ArrayOfMapsMap, "hash_of_maps": HashOfMapsMap,
}
assert set(MAP_CLASSES) == set(MAP_TYPES)


def create_map(type_name: str, key_size: int, value_size: int, max_entries: int, **kw) -> MapBase:
    """A map by type name ("hash", "BPF_MAP_TYPE_HASH", ...); kw: name, key_type, value_type, ncpus ..."""
    t = type_name.lower().removeprefix("bpf_map_type_")
    cls = MAP_CLASSES.get(t)
    if cls is None:
        raise ValueError(f"unknown map type {type_name!r}; known: {', '.join(MAP_CLASSES)}")
    return cls.create(key_size, value_size, max_entries, **kw)


__all__ = ["ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap", "LruPercpuHashMap",
           "ProgArrayMap", "RingBufMap", "PerfEventArrayMap", "QueueMap", "StackMap", "MapBase", "KeyValueMap",
           "MapError", "create_map", "current_cpu", "set_default_ncpus", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST",
           "MAP_CLASSES", "LpmTrieMap", "DevMap", "DevMapHash", "CpuMap", "XskMap",
           "ArrayOfMapsMap", "HashOfMapsMap", "InnerTemplate"]
