"""Map specifications of a BPF object (`MapSpec`) and how they are read and created.

Three sources, as libbpf reads them:
- BTF-defined maps in `.maps` (`__uint(type, ...)`, `__type(key, T)`, `__array(values, ...)` members,
  inner map definitions for map-in-map, `values` initialisers from `.rel.maps`);
- the legacy `maps` section: `struct bpf_map_def` (20 bytes) and longer variants (samples/bpf 28 bytes,
  iproute2 `bpf_elf_map` 36 bytes with pinning), one per symbol or arrays of them (`SEC("maps") m[2]`);
- global data sections `.data*`, `.rodata*`, `.bss*`: an array map of one value, `.rodata` frozen.

`create_map(spec, runtime)` builds the live map (maps.create_map / ProgArrayMap); types the runtime has no
class for are a LoadError naming the map. Relocations and programs are not handled here.
"""
from __future__ import annotations

import struct
from typing import Any
from dataclasses import dataclass, field

from ..errors import ELFError, LoadError
from . import btf as B

# The kernel's enum bpf_map_type, by number.
MAP_TYPE_NAMES = ("unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array",
                  "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps",
                  "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage",
                  "reuseport_sockarray", "percpu_cgroup_storage", "queue", "stack", "sk_storage",
                  "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter",
                  "user_ringbuf", "cgrp_storage", "arena")
MAP_IN_MAP = ("array_of_maps", "hash_of_maps")
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10
# legacy map definition layouts: size -> (name, offset of pinning or None, offset of the iproute2 id or None)
LEGACY_LAYOUTS = {20: ("bpf_map_def", None, None), 28: ("bpf_map_def (samples/bpf)", None, None),
                  36: ("bpf_elf_map (iproute2)", 24, 20)}
DATA_PREFIXES = (".data", ".rodata", ".bss")
MAX_MAP_BYTES = 1 << 28     # a map whose keys and values would need more is refused (a corrupt definition)


def map_type_name(num: int) -> str:
    return MAP_TYPE_NAMES[num] if 0 <= num < len(MAP_TYPE_NAMES) else f"unknown({num})"


@dataclass
class MapSpec:
    """One map of an object. `type` is the kernel's type name ("hash", "array", ...)."""
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: "MapSpec | None" = None        # the inner map of array_of_maps / hash_of_maps
    pinning: int = 0                      # LIBBPF_PIN_BY_NAME (1) / iproute2 PIN_* (kept, not acted on)
    section: str = ".maps"
    offset: int = 0                       # of the definition in its section
    values: dict = field(default_factory=dict)    # index -> program or map name (prog_array, map-in-map)
    key_btf: int | None = None            # BTF type ids, when known
    value_btf: int | None = None
    key_dtype: Any = None                 # numpy dtypes of key/value (plain C types), when known
    value_dtype: Any = None
    data: bytes | None = None             # initial contents of a global data section
    kind: str = "map"                     # "map" or "data" (.data/.rodata/.bss)
    elf_id: int = 0                       # iproute2 bpf_elf_map.id (tail-call sections "ID/KEY" name it)

    def __repr__(self) -> str:
        extra = f" inner={self.inner.type}" if self.inner else ""
        return (f"MapSpec({self.name!r}, {self.type}, key_size={self.key_size}, value_size={self.value_size}, "
                f"max_entries={self.max_entries}, flags={self.flags:#x}{extra})")


# ------------------------------------------------------------------------------------ BTF-defined maps
_UINT_FIELDS = {"type": "type", "max_entries": "max_entries", "map_flags": "flags", "key_size": "key_size",
                "value_size": "value_size", "pinning": "pinning", "numa_node": None, "map_extra": None}


def btf_map_def(btf: B.Btf, name: str, tid: int, section: str, offset: int, depth: int = 0) -> tuple[MapSpec, int]:
    """The MapSpec of a `.maps` variable of struct type `tid`; also the byte offset of its `values`
    member (-1 if none), where `.rel.maps` initialisers point."""
    t = btf.resolve(tid)
    where = f"map {name!r}"
    if t is None or t.kind != B.STRUCT:
        raise ELFError(f"{where}: BTF map definition is not a struct", section, offset)
    got: dict[str, int] = {}
    spec = MapSpec(name, "unspec", 0, 0, 0, section=section, offset=offset)
    values_off = -1
    for m in t.members:
        mt = btf.resolve(m.type)
        if m.name in _UINT_FIELDS:
            arr = btf.resolve(mt.size_or_type) if mt is not None and mt.kind == B.PTR else None
            if arr is None or arr.kind != B.ARRAY:
                raise ELFError(f"{where}: member {m.name!r} is not __uint(...) (a pointer to an array)",
                               section, offset + m.offset // 8)
            got[m.name] = arr.extra[2]
        elif m.name in ("key", "value"):
            if mt is None or mt.kind != B.PTR:
                raise ELFError(f"{where}: member {m.name!r} is not __type(...) (a pointer)", section,
                               offset + m.offset // 8)
            size = btf.size(mt.size_or_type)
            setattr(spec, f"{m.name}_btf", mt.size_or_type)
            setattr(spec, f"{m.name}_dtype", btf.dtype(mt.size_or_type))
            got[f"{m.name}_type_size"] = size
        elif m.name == "values":
            if mt is None or mt.kind != B.ARRAY:
                raise ELFError(f"{where}: member 'values' is not __array(...)", section, offset + m.offset // 8)
            values_off = m.offset // 8
            elem = btf.resolve(mt.extra[0])
            target = btf.resolve(elem.size_or_type) if elem is not None and elem.kind == B.PTR else None
            if target is not None and target.kind == B.STRUCT:
                if depth:
                    raise ELFError(f"{where}: nested map-in-map definitions are not supported", section, offset)
                spec.inner, _ = btf_map_def(btf, f"{name}.inner", target.id, section, offset, depth + 1)
        # other members (e.g. future libbpf fields) are ignored, as libbpf ignores unknown ones it can
    spec.type = map_type_name(got.get("type", 0))
    for fld, attr in _UINT_FIELDS.items():
        if attr and attr != "type" and fld in got:
            setattr(spec, attr, got[fld])
    for which in ("key", "value"):
        tsize = got.get(f"{which}_type_size")
        if tsize is not None:
            declared = got.get(f"{which}_size")
            if declared is not None and declared != tsize:
                raise ELFError(f"{where}: {which}_size {declared} conflicts with the {which} type's size {tsize}",
                               section, offset)
            setattr(spec, f"{which}_size", tsize)
    if spec.type in MAP_IN_MAP or spec.type == "prog_array":
        spec.value_size = spec.value_size or 4
        spec.key_size = spec.key_size or 4
    return spec, values_off


# ------------------------------------------------------------------------------------ legacy maps
def legacy_map_def(name: str, raw: bytes, section: str, offset: int) -> MapSpec:
    """A MapSpec from one legacy definition of len(raw) bytes (>= 20)."""
    if len(raw) < 20:
        raise ELFError(f"map {name!r}: definition of {len(raw)} bytes is shorter than struct bpf_map_def (20)",
                       section, offset)
    mtype, ks, vs, n, flags = struct.unpack_from("<5I", raw, 0)
    layout = LEGACY_LAYOUTS.get(len(raw))
    pin = struct.unpack_from("<I", raw, layout[1])[0] if layout and layout[1] is not None else 0
    elf_id = struct.unpack_from("<I", raw, layout[2])[0] if layout and layout[2] is not None else 0
    return MapSpec(name, map_type_name(mtype), ks, vs, n, flags, pinning=pin, section=section, offset=offset,
                   elf_id=elf_id)


def legacy_def_size(sec_size: int, syms: list[tuple[str, int, int]], btf: B.Btf | None) -> dict[str, int]:
    """Bytes per definition for each symbol (name, value, size) of a legacy maps section: its BTF (array
    element) size when BTF describes the variable; else the common size when every symbol has section size /
    symbol count bytes (libbpf's rule); else its symbol size, where a multiple of 20 that is no known layout
    is an array of 20-byte bpf_map_defs; symbols of size 0 get section size / symbol count."""
    out = {}
    even = sec_size // len(syms) if syms else 0
    uniform = bool(syms) and all(size == even for _, _, size in syms) and even * len(syms) == sec_size
    for name, _value, size in syms:
        per = 0
        var = btf.find(name, B.VAR) if btf is not None else None
        if var is not None and btf is not None:
            t = btf.resolve(var.size_or_type)
            if t is not None and t.kind == B.ARRAY and t.extra[2]:
                per = btf.size(t.extra[0])
            elif t is not None:
                per = btf.size(t.id)
        if not per and uniform:
            per = even                  # one definition per symbol, all of one size (libbpf's rule)
        if not per:
            per = size if size and (size in LEGACY_LAYOUTS or size % 20) else (20 if size else even)
        out[name] = per
    return out


# ------------------------------------------------------------------------------------ creation
def data_map_spec(name: str, data: bytes, size: int, section: str) -> MapSpec:
    """The array map of one global data section (.bss has no data: zeroes)."""
    flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if name.startswith(".rodata") else 0)
    return MapSpec(name, "array", 4, size, 1, flags, section=section, data=data or None, kind="data")


def create_map(spec: MapSpec, runtime):
    """The live map of `spec` (not yet registered in the runtime); LoadError for types without a class."""
    from ..maps import MAP_CLASSES, ArrayMap, KeyValueMap, ProgArrayMap, create_map as _create
    if spec.type not in MAP_CLASSES:
        raise LoadError(f"map {spec.name!r}: map type {spec.type!r} is not supported by this runtime "
                        f"(supported: {', '.join(MAP_CLASSES)})")
    need = max(spec.key_size + spec.value_size, 1) * spec.max_entries
    zero_ok = spec.type == "perf_event_array"          # libbpf: max_entries 0 = one per cpu
    if spec.max_entries < (0 if zero_ok else 1) or need > MAX_MAP_BYTES:
        raise LoadError(f"map {spec.name!r} ({spec.type}): key_size {spec.key_size}, value_size {spec.value_size}, "
                        f"max_entries {spec.max_entries} is not a map this runtime creates (max_entries must be "
                        f"positive, at most {MAX_MAP_BYTES >> 20} MiB in all)")
    if spec.type == "prog_array":
        return ProgArrayMap(spec.max_entries, runtime, name=spec.name)
    if spec.type in MAP_IN_MAP:
        from ..maps import InnerTemplate
        if spec.inner is None:
            raise LoadError(f"map {spec.name!r} ({spec.type}): no inner map definition (__array(values, ...))")
        i = spec.inner
        return _create(spec.type, spec.key_size, spec.value_size, spec.max_entries, name=spec.name, flags=spec.flags,
                       inner=InnerTemplate(i.type, i.key_size, i.value_size, i.max_entries))
    if spec.type == "perf_event_array" and spec.max_entries == 0:
        from ..maps import PerfEventArrayMap
        return PerfEventArrayMap(None, name=spec.name)
    kw: dict[str, Any] = {"name": spec.name}
    if issubclass(MAP_CLASSES[spec.type], KeyValueMap):
        kw["flags"] = spec.flags
        if spec.key_dtype is not None and spec.key_dtype.itemsize == spec.key_size:
            kw["key_type"] = spec.key_dtype
        if spec.value_dtype is not None and spec.value_dtype.itemsize == spec.value_size:
            kw["value_type"] = spec.value_dtype
    try:
        m = _create(spec.type, spec.key_size, spec.value_size, spec.max_entries, **kw)
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise LoadError(f"map {spec.name!r} ({spec.type}): {e}") from None
    if spec.kind == "data":
        if spec.data and isinstance(m, ArrayMap):
            m.values[0, :len(spec.data)] = memoryview(spec.data)
        if spec.flags & BPF_F_RDONLY_PROG and isinstance(m, ArrayMap):
            m.freeze()
    return m
