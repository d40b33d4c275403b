"""Cost of a helper call from JIT code (group `helper_call`): built-in helpers reached natively (get_prandom_u32,
ktime_get_ns, get_current_pid_tgid: calls into the support library, libc or a syscall), against a helper
registered from Python (a ctypes callback into the interpreter; target <= 1 us per call), and the same
program shape with no call as the floor. Each is `VM.bench(None, n)` on `call X; exit`, so the figure per
execution (harness.py) is the call plus the fixed cost of one run inside the native loop.
"""
from __future__ import annotations

import pytest

from bpfjit import VM, Program
from bpfjit.helpers import default_registry
from harness import time_repeats

ROUNDS = 20
PY_HELPER = 0x1_0000
PY_RESULT = 12345


def _registry():
    reg = default_registry().copy()

    @reg.helper(PY_HELPER, "py_constant")
    def py_constant(ctx, r1, r2, r3, r4, r5):
        return PY_RESULT

    return reg


CASES = {   # id: (program, check of the last r0)
    "no_call": ("mov %r0, 1\nexit", lambda r0: r0 == 1),
    "get_prandom_u32": ("call get_prandom_u32\nexit", lambda r0: r0 < 1 << 32),
    "ktime_get_ns": ("call ktime_get_ns\nexit", lambda r0: r0 > 0),
    "get_current_pid_tgid": ("call get_current_pid_tgid\nexit", lambda r0: r0 >> 32 > 0),
    "python_helper": (f"call {PY_HELPER}\nexit", lambda r0: r0 == PY_RESULT),
}


@pytest.mark.parametrize("case", CASES)
def test_helper_call(benchmark, case):
    benchmark.group = "helper_call"
    text, check = CASES[case]
    vm = VM(Program.from_asm(text), "jit", helpers=_registry())
    r0 = time_repeats(benchmark, lambda n: vm.bench(None, n), rounds=ROUNDS, kind="helper_call", program=case,
                      engine="jit")
    assert check(r0)
