"""LLVM compilation of program modules and the compile cache.

* `get_or_compile(key, build, opt, entry_points)`: the compiled module for key, from the in-memory cache
  (LRU, CACHE_SIZE modules), else from the disk cache (object code loaded without lowering, parsing or
  optimising), else built now: lowering (`build()` -> (IR text, facts)), the pass pipeline of `opt`, MCJIT.
* The disk cache is on by default in a per-user directory: $BPFJIT_CACHE_DIR if set ("0" or "" turns it
  off), else $XDG_CACHE_HOME/bpfjit, else ~/.cache/bpfjit. One object file + one JSON file (entry points,
  the external symbols the object needs) per key; the key (`cache_key`) covers whatever the caller passes
  (program bytes, config, helper plan, lddw values / map layout) plus llvmlite's version, the LLVM target
  CPU name and its features. The directory is bounded (`DISK_LIMIT` bytes, $BPFJIT_CACHE_MAX): the oldest
  entries are evicted. Symbols an object needs are bound through target.symbol providers (support code,
  maps, helpers) before it is loaded.
Lowering lives in lower*.py, target machines and pipelines in target.py, calling in engine.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

from . import support  # noqa: F401  (registers the support module's link hook)
from . import target
from .target import HOST_CPU, HOST_FEATURES, LIBCALLS, new_target_machine, target_machine  # noqa: F401

_LOCK = threading.RLock()
_CACHE: "OrderedDict[str, Compiled]" = OrderedDict()
CACHE_SIZE = 256
DISK_LIMIT = int(os.environ.get("BPFJIT_CACHE_MAX", 256 << 20))
FORMAT = 2          # disk entry format (part of every key)
STATS = {"compiled": 0, "disk_hits": 0, "memory_hits": 0}    # counters since the process started


def default_cache_dir() -> Path | None:
    """Where compiled programs are kept across processes (None: disk cache off)."""
    env = os.environ.get("BPFJIT_CACHE_DIR")
    if env is not None:
        return None if env.strip() in ("", "0") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "bpfjit"


_DISK: Path | None = default_cache_dir()


def set_disk_cache(path: str | os.PathLike | None) -> None:
    """Keep compiled objects in `path` across processes (None turns the disk cache off)."""
    global _DISK
    _DISK = Path(path) if path is not None else None


def disk_cache_dir() -> Path | None:
    return _DISK


def clear_cache() -> None:
    """Empty the in-memory cache (the disk cache stays)."""
    with _LOCK:
        _CACHE.clear()


def cache_key(*parts) -> str:
    h = hashlib.sha256()
    for p in (FORMAT, llvmlite.__version__, llvm.llvm_version_info, HOST_CPU, HOST_FEATURES) + parts:
        h.update(b"\0")
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()


def _externals(mod: llvm.ModuleRef) -> list[str]:
    """Names the module's code needs from outside (declared functions and external globals)."""
    out = [f.name for f in mod.functions if f.is_declaration and not f.name.startswith("llvm.")]
    out += [g.name for g in mod.global_variables if g.is_declaration]
    return sorted(out)


class Compiled:
    """A compiled module: its execution engine (kept alive) and entry-point addresses. `ir_text` and the
    optimised IR / assembly are rebuilt on demand for modules loaded from the disk cache."""

    def __init__(self, key: str, opt: int, entry_points: tuple[str, ...], build=None, ir_text=None,
                 obj: bytes | None = None, externals=()):
        self.key = key
        self.opt = opt
        self._build = build
        self._ir_text = ir_text
        self._mod = None
        self.from_disk = obj is not None
        if obj is not None:
            target.resolve_symbols(externals)
            empty = llvm.parse_assembly("")
            self.ee = target.mcjit(empty, opt, finalize=False)
            self.ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self.ee.finalize_object()
            self.object = obj
            self.externals = list(externals)
        else:
            mod = self._optimized()
            self.externals = _externals(mod)
            target.resolve_symbols(self.externals)
            captured = []
            self.ee = target.mcjit(mod, opt, huge=getattr(build, "huge", False),
                                   object_cache=(lambda m, buf: captured.append(bytes(buf)), lambda m: None))
            self.object = captured[0] if captured else None
        self.addr = {name: self.ee.get_function_address(name) for name in entry_points}
        if not all(self.addr.values()):
            raise RuntimeError(f"compiled module lacks an entry point: {self.addr}")

    @property
    def ir_text(self) -> str:
        if self._ir_text is None:
            self._ir_text = self._build()
        return self._ir_text

    def _optimized(self) -> llvm.ModuleRef:
        if self._mod is None:
            mod = llvm.parse_assembly(self.ir_text)
            mod.name = self.key
            mod.verify()
            target.optimize(mod, self.opt)
            self._mod = mod
        return self._mod

    @property
    def optimized_ir(self) -> str:
        return str(self._optimized())

    def native_asm(self) -> str:
        return target_machine(self.opt).emit_assembly(self._optimized())


# ---- the disk cache ----
def _paths(key: str) -> tuple[Path, Path]:
    return _DISK / f"{key}.o", _DISK / f"{key}.json"


def _disk_load(key: str):
    if _DISK is None:
        return None
    obj_p, meta_p = _paths(key)
    try:
        meta = json.loads(meta_p.read_text())
        obj = obj_p.read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("size") != len(obj):
        return None
    try:
        os.utime(meta_p)                 # recently used: evicted last
    except OSError:
        pass
    return obj, meta.get("externals", [])


def _disk_store(key: str, c: Compiled) -> None:
    if _DISK is None or c.object is None:
        return
    try:
        _DISK.mkdir(parents=True, exist_ok=True)
        obj_p, meta_p = _paths(key)
        for p, data in ((obj_p, c.object),
                        (meta_p, json.dumps({"size": len(c.object), "externals": c.externals}).encode())):
            tmp = p.with_suffix(p.suffix + f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        _evict()
    except OSError:
        pass


def _evict() -> None:
    """Keep the directory under DISK_LIMIT bytes: remove the least recently used entries."""
    entries = []
    total = 0
    for meta in _DISK.glob("*.json"):
        obj = meta.with_suffix(".o")
        try:
            size = meta.stat().st_size + obj.stat().st_size
            entries.append((meta.stat().st_mtime, meta, obj, size))
        except OSError:
            continue
        total += size
    entries.sort()
    while total > DISK_LIMIT and entries:
        _, meta, obj, size = entries.pop(0)
        for p in (meta, obj):
            try:
                p.unlink()
            except OSError:
                pass
        total -= size


def get_or_compile(key: str, build_ir, opt: int, entry_points: tuple[str, ...]) -> tuple[Compiled, bool]:
    """(compiled, hit): the cached module for key (memory, then disk), or build_ir() compiled now.
    build_ir may carry an attribute `huge` (a function large enough to skip instruction scheduling)."""
    with _LOCK:
        c = _CACHE.get(key)
        if c is not None:
            _CACHE.move_to_end(key)
            STATS["memory_hits"] += 1
            return c, True
    hit = False
    found = _disk_load(key)
    c = None
    if found is not None:
        try:
            c = Compiled(key, opt, entry_points, build=build_ir, obj=found[0], externals=found[1])
            hit = True
            STATS["disk_hits"] += 1
        except (RuntimeError, OSError):
            c = None
    if c is None:
        c = Compiled(key, opt, entry_points, build=build_ir)
        STATS["compiled"] += 1
        _disk_store(key, c)
    with _LOCK:
        existing = _CACHE.get(key)
        if existing is not None:      # another thread compiled the same key meanwhile: share its module
            _CACHE.move_to_end(key)
            return existing, True
        _CACHE[key] = c
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return c, hit
