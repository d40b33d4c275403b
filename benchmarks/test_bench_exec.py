"""Execution time per run of each workload: C -O2 baseline, JIT at O0..O3 checked and unchecked, and the
reference interpreter. Every measurement checks r0 against the workload's Python reference.

Group `exec:<program>`. The native rows of a group (C and every JIT configuration) all time the same
number of executions per call (calibrated once per program on the default JIT configuration), so
pytest-benchmark's own table compares them directly; the interpreter runs fewer. extra_info carries the
per-execution figures (harness.py) that report.py prints.
"""
from __future__ import annotations

from functools import cache

import pytest

from bpfjit import VM, Config
from harness import calibrate, time_repeats
from workloads import NAMES, WORKLOADS

NATIVE_ROUNDS = 40
INTERP_ROUNDS = 3
INTERP_TARGET_S = 0.03
JIT_CONFIGS = {f"O{opt}-{'checked' if checked else 'unchecked'}":
               (Config(opt_level=opt) if checked else Config(opt_level=opt, checked=False, insn_limit=None))
               for checked in (False, True) for opt in range(4)}


@cache
def native_n(name: str) -> int:
    """Executions per timed call for the native rows of `name`: about harness.TARGET_S on the default JIT."""
    w = WORKLOADS[name]
    vm = VM(w.program(), "jit")
    mem = w.make_mem()
    return calibrate(lambda n: vm.bench(mem, n))


@pytest.fixture(params=NAMES)
def workload(request, benchmark):
    benchmark.group = f"exec:{request.param}"
    return WORKLOADS[request.param]


@pytest.mark.parametrize("cfg_id", JIT_CONFIGS)
def test_jit(benchmark, workload, cfg_id):
    cfg = JIT_CONFIGS[cfg_id]
    vm = VM(workload.program(), "jit", cfg)
    mem = workload.make_mem()
    r0 = time_repeats(benchmark, lambda n: vm.bench(mem, n), rounds=NATIVE_ROUNDS, n=native_n(workload.name),
                      kind="exec", program=workload.name, engine="jit", opt_level=cfg.opt_level,
                      checked=cfg.checked)
    assert r0 == workload.expected()


def test_c(benchmark, workload, c_baselines):
    lib = c_baselines[workload.name]
    mem = workload.make_mem()
    assert lib.run_once(mem) == workload.expected()
    r0 = time_repeats(benchmark, lambda n: lib.bench(mem, n), rounds=NATIVE_ROUNDS, n=native_n(workload.name),
                      kind="exec", program=workload.name, engine="c")
    assert r0 == workload.expected()


def test_interp(benchmark, workload):
    vm = VM(workload.program(), "interp")
    mem = workload.make_mem()
    r0 = time_repeats(benchmark, lambda n: vm.bench(mem, n), rounds=INTERP_ROUNDS, target_s=INTERP_TARGET_S,
                      kind="exec", program=workload.name, engine="interp")
    assert r0 == workload.expected()
