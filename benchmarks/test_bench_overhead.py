"""Costs around the native code: one `VM.run` call from Python on a trivial program (mov r0, 1; exit), with
no mem and with a 64-byte numpy mem, in both engines (group `run_overhead`); and the filter over 100,000
64-byte records through `VM.run_batch` (one native call for the batch) against `VM.bench` of the same
program on one record that passes every test (the longest path; the same record as exec:filter), the
program's own native cost (group `batch:filter`).
"""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import VM, Program
from harness import time_calls, time_repeats
from workloads import filter_mem, filter_records, filter_ref, load_program

TRIVIAL = "mov %r0, 1\nexit\n"
RUN_ROUNDS, RUN_ITERATIONS = 20, 500
BATCH_RECORDS = 100_000
BATCH_ROUNDS = 10
MEMS = {"nomem": lambda: None, "mem64": lambda: np.zeros(64, dtype=np.uint8)}


@pytest.mark.parametrize("mem_id", MEMS)
@pytest.mark.parametrize("engine", ("jit", "interp"))
def test_run_overhead(benchmark, engine, mem_id):
    benchmark.group = "run_overhead"
    vm = VM(Program.from_asm(TRIVIAL), engine)
    mem = MEMS[mem_id]()
    r0 = time_calls(benchmark, lambda: vm.run(mem), rounds=RUN_ROUNDS, iterations=RUN_ITERATIONS,
                    kind="run_overhead", program="trivial", engine=engine, mem=mem_id)
    assert r0 == 1


@pytest.fixture(scope="module")
def records():
    recs = filter_records(BATCH_RECORDS)
    rows = recs.view(np.uint8).reshape(len(recs), -1)
    return recs, np.array([filter_ref(r.tobytes()) for r in rows], dtype=np.uint64)


def test_filter_run_batch(benchmark, records):
    benchmark.group = "batch:filter"
    recs, expected = records
    vm = VM(load_program("filter"), "jit")
    out = time_repeats(benchmark, lambda n: vm.run_batch(recs), rounds=BATCH_ROUNDS, n=len(recs),
                       subtract_fixed=False,      # the whole call is the cost of the batch
                       kind="batch", program="filter", engine="jit", mode="run_batch")
    assert np.array_equal(out, expected)


def test_filter_run_batch_same_record(benchmark):
    """run_batch over 100,000 copies of the bench record: the batch loop's own cost, free of the branch
    mispredictions varied records bring (the comparison with bench the issue's bar is about)."""
    benchmark.group = "batch:filter"
    mem = filter_mem()
    recs = np.tile(np.frombuffer(mem.tobytes(), dtype=np.uint8), (BATCH_RECORDS, 1))
    vm = VM(load_program("filter"), "jit")
    out = time_repeats(benchmark, lambda n: vm.run_batch(recs), rounds=BATCH_ROUNDS, n=len(recs),
                       subtract_fixed=False,
                       kind="batch", program="filter", engine="jit", mode="run_batch_same")
    assert (out == 1).all()


def test_filter_bench(benchmark):
    benchmark.group = "batch:filter"
    vm = VM(load_program("filter"), "jit")
    mem = filter_mem()
    r0 = time_repeats(benchmark, lambda n: vm.bench(mem, n), rounds=BATCH_ROUNDS, n=BATCH_RECORDS,
                      kind="batch", program="filter", engine="jit", mode="bench")
    assert r0 == filter_ref(mem.tobytes()) == 1
