"""LLVM compilation of program modules and the compile cache.

* `get_or_compile(key, build, opt, entry_points)`: the compiled module for key, from the in-memory cache
  (LRU, CACHE_SIZE modules), else from the disk cache (object code loaded without lowering, parsing or
  optimising), else built now: lowering (`build()` -> (IR text, facts)), the pass pipeline of `opt`, MCJIT.
* The disk cache (diskcache.py: on by default in a per-user directory, bounded) keeps the object and the
  external symbols it needs per key; the key (`cache_key`) covers whatever the caller passes (program
  bytes, config, helper plan, lddw values, i.e. the map layout) plus the cache format, llvmlite's and
  LLVM's versions, the target CPU name and its features. Symbols an object needs are bound through
  target.symbol_provider (support code, maps, helpers) before it is loaded.
Lowering lives in lower*.py, target machines and pipelines in target.py, calling in engine.py.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import llvmlite
import llvmlite.binding as llvm

from . import support  # noqa: F401  (registers the support module's link hook)
from . import target
from .target import HOST_CPU, HOST_FEATURES, LIBCALLS, new_target_machine, target_machine  # noqa: F401

from . import diskcache
from .diskcache import default_cache_dir, disk_cache_dir, set_disk_cache  # noqa: F401

_LOCK = threading.RLock()
_CACHE: "OrderedDict[str, Compiled]" = OrderedDict()
CACHE_SIZE = 256
FORMAT = 3          # disk entry format (part of every key)
STATS = {"compiled": 0, "disk_hits": 0, "memory_hits": 0}    # counters since the process started


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
        self.object: bytes | None = None          # the machine code (what the disk cache stores)
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
    found = diskcache.load(key)
    c = None
    if found is not None:
        try:
            c = Compiled(key, opt, entry_points, build=build_ir, obj=found[0],
                         externals=found[1].get("externals", []))
            hit = True
            STATS["disk_hits"] += 1
        except (RuntimeError, OSError):
            c = None
    if c is None:
        c = Compiled(key, opt, entry_points, build=build_ir)
        STATS["compiled"] += 1
        if c.object is not None:
            diskcache.store(key, c.object, {"externals": c.externals})
    with _LOCK:
        existing = _CACHE.get(key)
        if existing is not None:      # another thread compiled the same key meanwhile: share its module
            _CACHE.move_to_end(key)
            return existing, True
        _CACHE[key] = c
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return c, hit
