"""The one-program-per-thread guard (the seed's bpf_prog_active, runenv.exclusive) in both engines: a run
started from inside a running program of the same thread (here: from a Python helper) does not run and
returns 0 (run, run_batch, bench, and a kprobe fire, whose event is then dropped); the guard is released
after every run, also after a fault; runs in different threads proceed independently.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from bpfjit import VM, Program, RuntimeFault
from bpfjit.helpers import default_registry
from bpfjit.progtypes import pt_regs
from bpfjit.runtime import Runtime

NESTED = 0x1_0000      # helper ids of this file
BARRIER = 0x1_0001
INNER = "mov %r0, 7\nexit"
OUTER = f"call {NESTED}\nadd %r0, 1000\nexit"
NESTED_RUNS = {
    "run": lambda vm: vm.run(),
    "run_batch": lambda vm: int(vm.run_batch(np.zeros((3, 8), dtype=np.uint8)).sum()),
    "bench": lambda vm: vm.bench(None, 5),
}


def registry_with(nested_run=None, barrier=None):
    """The default helpers plus NESTED (returns nested_run()) or BARRIER (waits for barrier, returns 5)."""
    reg = default_registry().copy()

    @reg.helper(NESTED)
    def nested(ctx, r1, r2, r3, r4, r5):
        return nested_run()

    @reg.helper(BARRIER)
    def wait(ctx, r1, r2, r3, r4, r5):
        barrier.wait()
        return 5

    return reg


@pytest.mark.parametrize("how", NESTED_RUNS)
@pytest.mark.parametrize("outer_how", NESTED_RUNS)
def test_nested_run_returns_zero(engine, how, outer_how):
    inner = VM(Program.from_asm(INNER), engine)
    outer = VM(Program.from_asm(OUTER), engine, helpers=registry_with(lambda: NESTED_RUNS[how](inner)))
    expected = {"run": 1000, "run_batch": 3 * 1000, "bench": 1000}[outer_how]
    assert NESTED_RUNS[outer_how](outer) == expected
    assert NESTED_RUNS[how](inner) == {"run": 7, "run_batch": 21, "bench": 7}[how]   # released afterwards


def test_nested_kprobe_fire_drops_the_event(engine):
    rt = Runtime(kern_version=1)
    kp = rt.kprobe(rt.assemble(INNER, prog_type="kprobe", kern_version=1), engine)
    outer = VM(Program.from_asm(OUTER), engine, helpers=registry_with(lambda: kp.fire(pt_regs())))
    assert outer.run() == 1000
    assert len(rt.events) == 0
    assert kp.fire(pt_regs()) == 7 and len(rt.events) == 1


def test_guard_released_after_a_fault(engine):
    bad = VM(Program.from_asm("lddw %r1, 8\nldxdw %r0, [%r1]\nexit"), engine)
    with pytest.raises(RuntimeFault):
        bad.run()
    assert VM(Program.from_asm(INNER), engine).run() == 7


def test_threads_run_independently(engine):
    """Both threads are inside a run at the same time (the helper waits for the other thread): a guard
    shared between threads would make one run return 0 and the barrier time out."""
    barrier = threading.Barrier(2, timeout=30)
    vm = VM(Program.from_asm(f"call {BARRIER}\nexit"), engine, helpers=registry_with(barrier=barrier))
    results, errors = {}, []

    def body(k):
        try:
            results[k] = vm.run()
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == {0: 5, 1: 5}
