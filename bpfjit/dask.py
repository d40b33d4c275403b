"""Scale-out on Dask: `bpfjit.dask.filter(collection, source, merge=...)` (optional: `pip install bpfjit[dask]`).

    res = bpfjit.dask.filter(darr, asm_text, maps={"hist": ArrayMap(4, 8, 64, value_type=np.uint64)},
                             merge={"hist": "sum"})
    res.data      # the kept records (numpy array / pandas DataFrame), or the mask / r0 with mode=
    res.maps      # name -> merged contents; also written back into the maps you passed

The program travels to the workers as a `FilterSpec` (source, engine, Config, map specs: all plain picklable
data, no live maps or machine code). Each worker thread builds its `Filter` once per spec (the JIT's disk
cache makes that a cache hit after the first process) and runs partition after partition; before each
partition the maps are reset to their start state, after it their contents come back with the result.
Merge rules per map, applied at the client over the partitions in order:
    "sum"    workers start from zero; result = client contents + sum of every partition's contents
    "max"    workers start from the client contents; result = elementwise max
    "union"  hash maps: workers start from the client contents; result = every key (later partitions win)
    fn(a, b) workers start from the client contents; result = fn(...fn(fn(client, p0), p1)..., pN)
Contents are numpy arrays for array maps (ArrayMap.values copies) and dicts key -> value for hash maps.
Nothing here runs programs (filter.py) or knows map internals beyond their public API.
"""
from __future__ import annotations

import hashlib
import pickle
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import ConfigError
from .filter import MODES, Filter
from .program import Config

__all__ = ["filter", "FilterSpec", "MapSpec", "DaskResult", "RULES"]

RULES = ("sum", "max", "union")
KEYED = ("hash", "percpu_hash", "lru_hash", "lru_percpu_hash")
ARRAYS = ("array", "percpu_array")


def _typ(t):
    """A map's normalised key/value type back as something its constructor takes (numpy dtypes only)."""
    return t[1] if t is not None and t[0] == "numpy" else None


@dataclass
class MapSpec:
    """How to rebuild one map on a worker: type, sizes, types, cpu count and start contents."""
    name: str
    map_type: str
    key_size: int
    value_size: int
    max_entries: int
    key_type: Any = None
    value_type: Any = None
    ncpus: int | None = None
    contents: Any = None

    @classmethod
    def of(cls, name: str, m) -> "MapSpec":
        if m.map_type not in KEYED + ARRAYS:
            raise ConfigError(f"map {name!r} is a {m.map_type} map; Dask filtering merges array and hash maps "
                              f"({', '.join(ARRAYS + KEYED)})", "maps")
        kw = {"ncpus": m.ncpus} if getattr(m, "percpu", False) else {}
        return cls(name, m.map_type, m.key_size, m.value_size, m.max_entries, _typ(m.key_type),
                   _typ(m.value_type), contents=contents(m), **kw)

    def build(self):
        from .maps import create_map
        kw = {"name": self.name, "key_type": self.key_type, "value_type": self.value_type}
        if self.ncpus is not None:
            kw["ncpus"] = self.ncpus
        return create_map(self.map_type, self.key_size, self.value_size, self.max_entries, **kw)


def contents(m):
    """A map's contents as plain data: a copy of ArrayMap.values, or a dict key -> value."""
    if m.map_type in ARRAYS:
        return np.array(m.values, copy=True)
    return {k: (np.array(v) if isinstance(v, list) else v) for k, v in m.items()}


def load_contents(m, data) -> None:
    """Replace a map's contents with `data` (as `contents` returns it; None = empty/zero)."""
    if m.map_type in ARRAYS:
        view = m.values
        view[...] = 0 if data is None else data
        return
    m.clear()
    for k, v in (data or {}).items():
        m[k] = list(v) if getattr(m, "percpu", False) else v


@dataclass
class FilterSpec:
    """Everything a worker needs to build the Filter: picklable data only."""
    source: Any
    engine: str = "jit"
    config: Config | None = None
    program: str | None = None
    maps: list[MapSpec] = field(default_factory=list)
    start: dict = field(default_factory=dict)        # map name -> contents each partition starts from

    ident: str = ""                                  # set at the client: the worker-side cache key

    def __post_init__(self):
        if not self.ident:
            self.ident = hashlib.sha256(pickle.dumps((
                self.source, self.engine, self.config, self.program,
                [(m.name, m.map_type, m.key_size, m.value_size, m.max_entries, str(m.key_type), str(m.value_type),
                  m.ncpus) for m in self.maps]))).hexdigest()

    def key(self) -> str:
        return self.ident


_LOCAL = threading.local()       # .filters: spec key -> (Filter, {name: map}) of this worker thread


def _worker_filter(spec: FilterSpec):
    cache = _LOCAL.__dict__.setdefault("filters", {})
    key = spec.key()
    hit = cache.get(key)
    if hit is None:
        maps = {m.name: m.build() for m in spec.maps}
        f = Filter(spec.source, engine=spec.engine, config=spec.config, maps=maps, program=spec.program,
                   progress=False)
        hit = cache[key] = (f, maps)
    return hit


def run_partition(spec: FilterSpec, part, mode: str, threads: int | None):
    """On a worker: one partition through the spec's Filter -> (result, {map name: contents})."""
    f, maps = _worker_filter(spec)
    for name, m in maps.items():
        load_contents(m, spec.start.get(name))
    out = getattr(f, mode)(part, threads=threads, progress=False)
    return out, {name: contents(m) for name, m in maps.items()}


def _merge_one(rule, a, b):
    if callable(rule):
        return rule(a, b)
    if isinstance(a, np.ndarray):
        if rule == "sum":
            return a + b
        if rule == "max":
            return np.maximum(a, b)
        raise ConfigError(f"rule {rule!r} does not apply to array maps (use sum, max or a function)", "merge")
    out = dict(a)
    for k, v in b.items():
        if rule == "union" or k not in out:
            out[k] = v
        elif rule == "sum":
            out[k] = np.asarray(out[k]) + np.asarray(v)
        else:
            out[k] = np.maximum(out[k], v)
    return out


@dataclass
class DaskResult:
    data: Any                      # kept records / mask / r0, concatenated in partition order
    maps: dict                     # map name -> merged contents


def filter(collection, source, merge: dict | str | Callable | None = None, *, maps: dict | None = None,
           mode: str = "apply", engine: str = "jit", config: Config | None = None, program: str | None = None,
           threads: int | None = 1, client=None) -> DaskResult:
    """Filter a dask array (2-D uint8 or 1-D structured, chunked along the first axis only) or a dask
    DataFrame partition by partition on the current Dask scheduler (a distributed Client if one is active,
    or `client=`), and merge the maps the program wrote. `merge`: one rule for every map, or map name ->
    rule (default "sum"); see the module docstring. The merged contents are also written into `maps`."""
    try:
        import dask
        import dask.array as da
        import dask.dataframe as dd
    except ImportError as e:       # pragma: no cover - depends on the environment
        raise ConfigError("needs Dask: pip install 'bpfjit[dask]'", "collection") from e
    if mode not in MODES:
        raise ConfigError(f"must be one of {', '.join(MODES)}; got {mode!r}", "mode")
    maps = dict(maps or {})
    rules = {name: (merge.get(name, "sum") if isinstance(merge, dict) else (merge or "sum")) for name in maps}
    for name, rule in rules.items():
        if not callable(rule) and rule not in RULES:
            raise ConfigError(f"map {name!r}: rule must be one of {', '.join(RULES)} or a function; got {rule!r}",
                              "merge")
    specs = [MapSpec.of(name, m) for name, m in maps.items()]
    start = {s.name: (None if rules[s.name] == "sum" else s.contents) for s in specs}
    for s in specs:
        s.contents = None                     # travels once, in `start`
    if isinstance(source, Filter):
        raise ConfigError("pass the Filter's source (a Program, text or ELF), not a Filter", "source")
    spec = FilterSpec(source, engine, config, program, specs, start)
    pickle.dumps(spec)                          # fail here, with the reason, rather than on a worker
    if isinstance(collection, da.Array):
        if collection.ndim > 1 and len(collection.chunks[1]) > 1 or collection.ndim > 2:
            raise ConfigError("a dask array of records must be chunked along the first axis only "
                              "(rechunk({1: -1}))", "collection")
        parts = collection.to_delayed().reshape(-1)
        is_frame = False
    elif isinstance(collection, dd.DataFrame):
        parts = collection.to_delayed()
        is_frame = True
    else:
        raise ConfigError(f"must be a dask Array or DataFrame; got a {type(collection).__name__}", "collection")
    task = dask.delayed(run_partition, pure=False)
    tasks = [task(spec, p, mode, threads) for p in parts]
    kw = {"scheduler": client} if client is not None else {}
    results = dask.compute(*tasks, **kw)
    outs = [r[0] for r in results]
    if is_frame and mode == "apply":
        import pandas as pd  # type: ignore[import-untyped]
        data = pd.concat(outs) if outs else collection._meta
    else:
        data = np.concatenate(outs) if outs else np.zeros(0)
    merged = {}
    for name, m in maps.items():
        acc = contents(m)
        for _, part_maps in results:
            acc = _merge_one(rules[name], acc, part_maps[name])
        merged[name] = acc
        load_contents(m, acc)
    return DaskResult(data, merged)

