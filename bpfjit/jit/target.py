"""The host target: LLVM initialisation, target machines for the host CPU (name and features), the
compiler-runtime libcalls bound before anything links, the optimisation pipeline, and MCJIT engines.

Every place that turns an LLVM module into machine code (program modules in compiler.py, the support
module, the helper and map support libraries) goes through `optimize` and `mcjit`, so that the support
functions are bound (support.ensure, via the `before_link` hooks) before a module that calls them links.
No lowering and no caching here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Callable

import llvmlite.binding as llvm

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()

HOST_CPU = llvm.get_host_cpu_name()
HOST_FEATURES = llvm.get_host_cpu_features().flatten()
_TMS: dict[int, llvm.TargetMachine] = {}
_CODEGEN_LOCK = threading.Lock()
# code generation of a function above either size skips instruction scheduling (quadratic in the memory
# operations of one block) and uses the basic register allocator
HUGE_FUNCTION = 3000      # reachable BPF instructions of the largest function
HUGE_BLOCK = 256          # BPF instructions of the longest basic block

# Functions LLVM's code generator may call on its own (libcalls: 128-bit division from loop trip-count
# arithmetic, memory intrinsics). MCJIT would leave an unresolved one at address 0, so bind them all up front
# from the C library and the compiler runtime (libgcc_s).
LIBCALLS = ("memcpy", "memmove", "memset", "__udivti3", "__umodti3", "__divti3", "__modti3", "__udivmodti4",
            "__divmodti4", "__multi3", "__popcountdi2", "__popcountti2", "__clzti2", "__ctzti2")


def _bind_libcalls() -> None:
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


def optimize(mod: llvm.ModuleRef, opt: int, vectorize: bool | None = None) -> None:
    """Run the new-pass-manager pipeline of level `opt` (O0: only the always-inliner and SROA, which promotes
    register allocas)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=opt)
    vec = opt >= 2 if vectorize is None else vectorize
    pto.loop_vectorization = vec
    pto.slp_vectorization = vec
    pb = llvm.create_pass_builder(target_machine(opt), pto)
    if opt > 0:
        pb.getModulePassManager().run(mod, pb)
    else:
        mpm = llvm.create_new_module_pass_manager()
        mpm.add_always_inliner_pass()
        mpm.add_sroa_pass()
        mpm.run(mod, pb)


_BEFORE_LINK: list = []


def before_link(hook) -> None:
    """Register hook() to run before any module is linked by `mcjit` (support.py binds its symbols)."""
    _BEFORE_LINK.append(hook)


_PROVIDERS: list[tuple[str, Callable[[], object]]] = []


def symbol_provider(prefix: str, ensure) -> None:
    """Symbols starting with `prefix` are bound (llvm.add_symbol) by ensure() (a support library compiled
    once per process): what a module loaded from the disk cache needs before it links."""
    _PROVIDERS.append((prefix, ensure))


def resolve_symbols(names) -> None:
    """Make sure every external symbol in names is bound: by its provider, else from the C library."""
    for name in names:
        for prefix, ensure in _PROVIDERS:
            if name.startswith(prefix):
                ensure()
                break
        else:
            if llvm.address_of_symbol(name) is None:
                fn = getattr(_LIBC, name, None)
                if fn is not None:
                    llvm.add_symbol(name, ctypes.cast(fn, ctypes.c_void_p).value)


_LIBC = ctypes.CDLL(None)


def mcjit(mod: llvm.ModuleRef, opt: int, object_cache=None, huge: bool = False, hooks: bool = True,
          finalize: bool = True):
    """An MCJIT engine for mod with its code generated (finalized). `huge`: a function so large that the
    instruction schedulers (quadratic in the memory operations of one block) would dominate; they are
    switched off for this code generation only (LLVM options are process-wide: hence the lock)."""
    if hooks:
        for hook in _BEFORE_LINK:
            hook()
    if not huge or opt == 0:
        return _mcjit(mod, opt, object_cache, finalize)
    with _CODEGEN_LOCK:
        _sched(False)
        try:
            return _mcjit(mod, opt, object_cache, finalize)
        finally:
            _sched(True)


def _mcjit(mod, opt, object_cache, finalize):
    ee = llvm.create_mcjit_compiler(mod, new_target_machine(opt))
    if object_cache is not None:
        ee.set_object_cache(*object_cache)
    if finalize:
        ee.finalize_object()
    return ee


def _sched(on: bool) -> None:
    """Instruction schedulers on (the host's default at O2) or off, for the next code generation."""
    for o in ("-enable-misched", "-post-RA-scheduler"):
        llvm.set_option("", f"{o}={'true' if on else 'false'}")
    llvm.set_option("", "-regalloc=" + ("default" if on else "basic"))
