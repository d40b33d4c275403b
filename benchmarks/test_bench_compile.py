"""JIT compile time (lowering + LLVM passes + MCJIT code generation, i.e. building a VM with an empty compile
cache) for each workload at every opt level and for a generated 100-instruction program, and the cost of
building a VM whose program is already in the compile cache. Groups `compile`, `compile:generated`,
`cache_hit`.
"""
from __future__ import annotations

import pytest

from bpfjit import VM, Config
from bpfjit.jit import compiler
from harness import time_calls
from workloads import NAMES, generated_program, load_program

COMPILE_ROUNDS = 7
HIT_ROUNDS, HIT_ITERATIONS = 20, 20


@pytest.mark.parametrize("opt", range(4))
@pytest.mark.parametrize("name", NAMES)
def test_compile(benchmark, name, opt):
    benchmark.group = "compile"
    prog, cfg = load_program(name), Config(opt_level=opt)
    vm = time_calls(benchmark, lambda: VM(prog, "jit", cfg), rounds=COMPILE_ROUNDS, iterations=1,
                    setup=compiler.clear_cache, kind="compile", program=name, opt_level=opt, checked=True)
    assert not vm.engine.cache_hit


def test_compile_generated(benchmark):
    benchmark.group = "compile:generated"
    prog = generated_program(100)
    vm = time_calls(benchmark, lambda: VM(prog, "jit"), rounds=COMPILE_ROUNDS, iterations=1,
                    setup=compiler.clear_cache, kind="compile", program="generated100",
                    opt_level=Config().opt_level, checked=True, insns=len(prog))
    assert not vm.engine.cache_hit
    assert vm.run() == VM(prog, "interp").run()


@pytest.mark.parametrize("name", NAMES)
def test_cache_hit(benchmark, name):
    benchmark.group = "cache_hit"
    prog = load_program(name)
    VM(prog, "jit")                                   # compiled once; every timed VM is a cache hit
    vm = time_calls(benchmark, lambda: VM(prog, "jit"), rounds=HIT_ROUNDS, iterations=HIT_ITERATIONS,
                    kind="cache_hit", program=name)
    assert vm.engine.cache_hit
