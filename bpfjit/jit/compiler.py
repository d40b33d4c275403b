"""LLVM compilation: host target machine, the new pass manager pipeline at O0..O3, MCJIT, and the compile
cache (in memory, keyed by program bytes + options + helper plan + llvmlite version; optionally objects on
disk via BPFJIT_CACHE_DIR or `set_disk_cache`). Lowering lives in lower.py; calling in engine.py.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm


_LOCK = threading.RLock()
_TMS: dict[int, llvm.TargetMachine] = {}
_CACHE: "OrderedDict[str, Compiled]" = OrderedDict()
CACHE_SIZE = 256
_DISK: Path | None = Path(os.environ["BPFJIT_CACHE_DIR"]) if os.environ.get("BPFJIT_CACHE_DIR") else None

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()

# Functions LLVM's code generator may call on its own (libcalls: 128-bit division from loop trip-count
# arithmetic, memory intrinsics). MCJIT would leave an unresolved one at address 0, so bind them all up front
# from the C library and the compiler runtime (libgcc_s).
LIBCALLS = ("memcpy", "memmove", "memset", "__udivti3", "__umodti3", "__divti3", "__modti3", "__udivmodti4",
            "__divmodti4", "__multi3", "__popcountdi2", "__popcountti2", "__clzti2", "__ctzti2")


def _bind_libcalls() -> None:
    import ctypes
    import ctypes.util
    libs = [ctypes.CDLL(None)]
    name = ctypes.util.find_library("gcc_s")
    if name:
        try:
            libs.append(ctypes.CDLL(name))
        except OSError:
            pass
    for sym in LIBCALLS:
        for lib in libs:
            fn = getattr(lib, sym, None)
            if fn is not None:
                llvm.add_symbol(sym, ctypes.cast(fn, ctypes.c_void_p).value)
                break


_bind_libcalls()


def set_disk_cache(path: str | os.PathLike | None) -> None:
    """Keep compiled objects in `path` across processes (None turns the disk cache off)."""
    global _DISK
    _DISK = Path(path) if path is not None else None
    if _DISK is not None:
        _DISK.mkdir(parents=True, exist_ok=True)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


HOST_CPU = llvm.get_host_cpu_name()
HOST_FEATURES = llvm.get_host_cpu_features().flatten()


def new_target_machine(opt: int) -> llvm.TargetMachine:
    """A target machine for the host CPU and its features. An execution engine takes ownership of the one
    it is given (and frees it with itself), so every engine gets its own."""
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=HOST_CPU, features=HOST_FEATURES, opt=opt, codemodel="jitdefault", jit=True)


def target_machine(opt: int) -> llvm.TargetMachine:
    """The shared target machine used by pass pipelines (never handed to an execution engine)."""
    tm = _TMS.get(opt)
    if tm is None:
        tm = _TMS[opt] = new_target_machine(opt)
    return tm


def cache_key(*parts) -> str:
    h = hashlib.sha256()
    h.update(llvmlite.__version__.encode())
    h.update(HOST_CPU.encode())
    for p in parts:
        h.update(b"\0")
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()


class Compiled:
    """A compiled module: its execution engine (kept alive) and entry-point addresses."""

    def __init__(self, key: str, ir_text: str, opt: int, entry_points: tuple[str, ...]):
        self.key = key
        self.ir_text = ir_text
        self.opt = opt
        tm = target_machine(opt)
        mod = llvm.parse_assembly(ir_text)
        mod.name = key
        mod.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=opt)
        pto.loop_vectorization = opt >= 2
        pto.slp_vectorization = opt >= 2
        pb = llvm.create_pass_builder(tm, pto)
        if opt > 0:
            pb.getModulePassManager().run(mod, pb)
        else:   # O0: only promote the register allocas (cheap, and keeps registers out of memory)
            mpm = llvm.create_new_module_pass_manager()
            mpm.add_sroa_pass()
            mpm.run(mod, pb)
        self._mod = mod
        self.ee = llvm.create_mcjit_compiler(mod, new_target_machine(opt))
        if _DISK is not None:
            self.ee.set_object_cache(_notify, _getbuffer)
        self.ee.finalize_object()
        self.addr = {name: self.ee.get_function_address(name) for name in entry_points}

    @property
    def optimized_ir(self) -> str:
        return str(self._mod)

    def native_asm(self) -> str:
        return target_machine(self.opt).emit_assembly(self._mod)


def _disk_path(module) -> Path:
    return _DISK / f"{module.name}.o"


def _notify(module, buffer: bytes) -> None:
    try:
        _disk_path(module).write_bytes(buffer)
    except OSError:
        pass


def _getbuffer(module):
    p = _disk_path(module)
    return p.read_bytes() if p.exists() else None


def get_or_compile(key: str, build_ir, opt: int, entry_points: tuple[str, ...]) -> tuple[Compiled, bool]:
    """(compiled, hit): the cached module for key, or build_ir() compiled now."""
    with _LOCK:
        c = _CACHE.get(key)
        if c is not None:
            _CACHE.move_to_end(key)
            return c, True
    ir_text = build_ir()
    c = Compiled(key, ir_text, opt, entry_points)
    with _LOCK:
        existing = _CACHE.get(key)
        if existing is not None:      # another thread compiled the same key meanwhile: share its module
            _CACHE.move_to_end(key)
            return existing, True
        _CACHE[key] = c
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return c, False
