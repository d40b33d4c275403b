"""The JIT's support module: out-of-line runtime functions every compiled program may call (the region
table scan `bpf_check_slow` and `bpf_set_fault`), compiled once per process and bound by name with
llvm.add_symbol, so that program modules only declare them (compiling them into every module would
double the compile time of small checked programs). Bodies are defined in lower.py.
"""
from __future__ import annotations

import threading

import llvmlite.binding as llvm
from llvmlite import ir

_LOCK = threading.Lock()
_ENGINE = None
EXPORTS = ("bpf_check_slow", "bpf_set_fault")


def ensure() -> None:
    """Compile the support module and bind its symbols, once per process."""
    global _ENGINE
    if _ENGINE is not None:
        return
    with _LOCK:
        if _ENGINE is not None:
            return
        from . import compiler
        from .lower import define_region_check, define_set_fault
        module = ir.Module(name="bpfjit_support")
        define_region_check(module)
        define_set_fault(module)
        mod = llvm.parse_assembly(str(module))
        mod.verify()
        tm = compiler.target_machine(2)
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=2))
        pb.getModulePassManager().run(mod, pb)
        ee = llvm.create_mcjit_compiler(mod, compiler.new_target_machine(2))
        ee.finalize_object()
        for name in EXPORTS:
            llvm.add_symbol(name, ee.get_function_address(name))
        _ENGINE = ee
