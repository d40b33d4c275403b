"""JIT compile time (lowering + LLVM passes + MCJIT code generation, i.e. building a VM with empty compile
caches) for each workload at every opt level, for generated programs of 100 ... 10,000 instructions of
four kinds (compilegen.py: alu, mem, stack, branchy; checked and trusted), the cost of building a VM whose
program is in the memory cache or only in the disk cache, and, each in a fresh process: the first compile
with its peak memory, cold start (first VM(...).run()) and the first run_batch after it. Groups `compile`,
`compile:generated`, `compile:curve`, `compile:small`, `compile:opt`, `cache_hit`, `disk_hit`, `cold`.
The full curve up to 40,000 instructions with its table and plot: benchmarks/compile_curve.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import VM, Config
from bpfjit.jit import compiler
from compile_curve import _COLD, _ONE, HERE, _env, _py
from compilegen import KINDS, MEM_SIZE, program
from harness import time_calls
from workloads import NAMES, generated_program, load_program

COMPILE_ROUNDS = 7
HIT_ROUNDS, HIT_ITERATIONS = 20, 20
CURVE = (100, 1_000, 10_000)


def _cfg(checked: bool, opt: int = 2) -> Config:
    return Config(opt_level=opt) if checked else Config(checked=False, insn_limit=None, opt_level=opt)


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


@pytest.mark.parametrize("n", CURVE)
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "trusted"])
@pytest.mark.parametrize("kind", KINDS)
def test_compile_curve(benchmark, kind, checked, n):
    benchmark.group = f"compile:curve:{kind}"
    prog, cfg = program(kind, n), _cfg(checked)
    rounds = 3 if n < 10_000 else 1
    vm = time_calls(benchmark, lambda: VM(prog, "jit", cfg), rounds=rounds, iterations=1,
                    setup=compiler.clear_cache, kind="compile", program=f"{kind}{n}", checked=checked, insns=n)
    assert not vm.engine.cache_hit
    mem = bytes(MEM_SIZE)
    assert vm.run(mem) == VM(prog, "interp", cfg).run(mem)


@pytest.mark.parametrize("n", (9, 100, 1_000))
@pytest.mark.parametrize("safety", ["auto", "checked", "trusted"])
def test_compile_small(benchmark, safety, n):
    """The issue-9 bar's case: a small program in the default mode (auto: verify, then proven code) and in
    checked and trusted mode; VM creation with empty compile caches (verification included)."""
    benchmark.group = "compile:small"
    prog, cfg = program("branchy", n) if n > 9 else generated_program(9), Config(safety=safety)
    vm = time_calls(benchmark, lambda: VM(prog, "jit", cfg), rounds=COMPILE_ROUNDS, iterations=1,
                    setup=compiler.clear_cache, kind="compile", program=f"branchy{n}", safety=safety, insns=n)
    assert not vm.engine.cache_hit
    before = compiler.STATS["compiled"]
    mem = bytes(MEM_SIZE)
    assert vm.run(mem) == VM(prog, "interp", cfg).run(mem)
    vm.run_batch(np.zeros((4, MEM_SIZE), np.uint8))
    vm.bench(mem, 3)
    assert compiler.STATS["compiled"] == before          # run, run_batch and bench: one compile


@pytest.mark.parametrize("opt", range(4))
@pytest.mark.parametrize("kind", ["alu", "mem"])
def test_compile_opt_levels(benchmark, kind, opt):
    benchmark.group = "compile:opt"
    prog, cfg = program(kind, 1_000), _cfg(True, opt)
    time_calls(benchmark, lambda: VM(prog, "jit", cfg), rounds=3, iterations=1, setup=compiler.clear_cache,
               kind="compile", program=f"{kind}1000", opt_level=opt, checked=True, insns=1_000)


@pytest.mark.parametrize("name", NAMES)
def test_cache_hit(benchmark, name):
    benchmark.group = "cache_hit"
    prog = load_program(name)
    VM(prog, "jit")                                   # compiled once; every timed VM is a cache hit
    vm = time_calls(benchmark, lambda: VM(prog, "jit"), rounds=HIT_ROUNDS, iterations=HIT_ITERATIONS,
                    kind="cache_hit", program=name)
    assert vm.engine.cache_hit


@pytest.mark.parametrize("name", NAMES)
def test_disk_hit(benchmark, name, tmp_path):
    """A program only in the disk cache (as in a new process): the object is loaded, nothing compiled."""
    benchmark.group = "disk_hit"
    prog = load_program(name)
    compiler.set_disk_cache(tmp_path)
    try:
        compiler.clear_cache()
        VM(prog, "jit")                                   # compiled and stored
        def load():
            compiler.clear_cache()            # not in memory: from the disk
            return VM(prog, "jit")
        vm = time_calls(benchmark, load, rounds=HIT_ROUNDS, iterations=HIT_ITERATIONS, kind="disk_hit",
                        program=name)
        assert vm.engine.compiled.from_disk
    finally:
        compiler.set_disk_cache(None)


@pytest.mark.parametrize("kind", KINDS)
def test_fresh_process_compile_and_peak_memory(benchmark, kind):
    """One compile of a 10,000-instruction program in a fresh process: CPU time and peak RSS."""
    benchmark.group = "cold"
    res = benchmark.pedantic(lambda: _py(_ONE.format(bench=str(HERE), kind=kind, n=10_000, checked=True, opt=2),
                                         _env(None), 900), rounds=1, iterations=1)
    benchmark.extra_info.update(kind="fresh_compile", program=f"{kind}10000", cpu_s=res["cpu"],
                                peak_rss_mib=res["rss_mib"])
    assert res["r0"] is not None


@pytest.mark.parametrize("cache", ["empty", "warm", "off"])
def test_cold_start(benchmark, cache, tmp_path):
    """First VM(...).run() and first run_batch in a fresh process (imports timed apart)."""
    benchmark.group = "cold"
    src = "ldxb %r0, [%r1+3]\nadd %r0, %r2\nexit"
    env = _env(None if cache == "off" else tmp_path)
    if cache == "warm":
        _py(_COLD.format(src=src), env, 300)
    res = benchmark.pedantic(lambda: _py(_COLD.format(src=src), env, 300), rounds=1, iterations=1)
    benchmark.extra_info.update(kind="cold_start", cache=cache, **{k + "_s": v for k, v in res.items()})
    assert res["first_batch"] < res["first_run"] or cache == "warm"
