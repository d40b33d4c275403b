"""How the suite times things: choosing a repeat count n so one timed call takes a few milliseconds, timing
through pytest-benchmark's `pedantic` mode, and recording per-execution figures in `extra_info`
(what report.py reads). Nothing here knows about particular programs or engines.

Two clocks. pytest-benchmark times wall-clock rounds; after them the same rounds are repeated under the
calling thread's CPU clock (`time.thread_time_ns`, which also counts the native code the thread runs
inside a ctypes call), which is not charged while another process has the CPU, so it holds up better
on a busy machine. Per clock, the fastest round is used (the least disturbed), less the fixed cost of one
call with n = 0 (the Python set-up of VM.bench, the ctypes call), divided by the executions per call:
  ns_per_exec / ns_per_exec_median   wall clock, fastest / median round
  cpu_ns_per_exec                    thread CPU clock, fastest round
  fixed_ns_per_call, cpu_fixed_ns_per_call, ns_per_exec_gross (wall, nothing subtracted)
"""
from __future__ import annotations

import time
from typing import Callable

TARGET_S = 0.002        # one timed call of a native repeat loop
MIN_PROBE_S = 0.0005    # calibration stops doubling n once a call takes this long
FIXED_TRIES = 100       # calls with n = 0 to find the fixed cost of one call


def fastest(fn: Callable[[], object], rounds: int, *, iterations: int = 1, setup=None,
            clock=time.perf_counter_ns) -> float:
    """Seconds per call of fn in the fastest of `rounds` rounds of `iterations` calls (setup untimed)."""
    best = float("inf")
    for _ in range(rounds):
        if setup is not None:
            setup()
        t0 = clock()
        for _ in range(iterations):
            fn()
        best = min(best, (clock() - t0) / iterations)
    return best * 1e-9


def calibrate(call: Callable[[int], object], target_s: float = TARGET_S, n_max: int = 1 << 26) -> int:
    """A repeat count n for which call(n) takes about target_s (at least 1).

    Doubles n from 1 until a call takes MIN_PROBE_S, then scales by the fastest of three probes (a single
    probe is easily inflated by the other work on the machine).
    """
    call(1)
    n = 1
    while n < n_max and fastest(lambda: call(n), 1) < MIN_PROBE_S:
        n *= 2
    return max(1, min(n_max, round(n * target_s / fastest(lambda: call(n), 3))))


def record(benchmark, per_call: int, cpu_s: float, fixed: tuple[float, float] = (0.0, 0.0), **info) -> None:
    """Store the figures of a finished measurement: per_call executions happened in each timed call, the
    fastest took cpu_s of thread CPU time, and fixed = (wall, cpu) seconds of each call did not depend
    on per_call."""
    benchmark.extra_info.update(info, per_call=per_call)
    st, (fixed_wall, fixed_cpu) = benchmark.stats.stats, fixed

    def per_exec(seconds: float) -> float:
        return max(seconds, 0.0) / per_call * 1e9

    benchmark.extra_info.update(ns_per_exec=per_exec(st.min - fixed_wall),
                                ns_per_exec_median=per_exec(st.median - fixed_wall),
                                cpu_ns_per_exec=per_exec(cpu_s - fixed_cpu))
    if fixed_wall:
        benchmark.extra_info.update(ns_per_exec_gross=per_exec(st.min), fixed_ns_per_call=fixed_wall * 1e9,
                                    cpu_fixed_ns_per_call=fixed_cpu * 1e9)


def time_repeats(benchmark, call: Callable[[int], int], *, rounds: int, n: int | None = None,
                 target_s: float = TARGET_S, subtract_fixed: bool = True, **info) -> int:
    """Time call(n) (a loop running the workload n times) for `rounds` rounds; returns its last result.

    subtract_fixed: take the cost of call(0) off each round (False when call ignores n).
    """
    n = n if n is not None else calibrate(call, target_s)
    result = benchmark.pedantic(call, args=(n,), rounds=rounds, warmup_rounds=1, iterations=1)
    if benchmark.disabled:
        return result
    cpu_s = fastest(lambda: call(n), rounds, clock=time.thread_time_ns)
    fixed = (0.0, 0.0)
    if subtract_fixed:
        fixed = (fastest(lambda: call(0), FIXED_TRIES),
                 fastest(lambda: call(0), FIXED_TRIES, clock=time.thread_time_ns))
    record(benchmark, n, cpu_s, fixed, **info)
    return result


def time_calls(benchmark, call: Callable[[], object], *, rounds: int, iterations: int, setup=None,
               **info):
    """Time a Python-level call (iterations per round; with setup, one per round); returns its result."""
    iterations = 1 if setup is not None else iterations
    result = benchmark.pedantic(call, setup=setup, rounds=rounds, warmup_rounds=1, iterations=iterations)
    if benchmark.disabled:
        return result
    cpu_s = fastest(call, rounds, iterations=iterations, setup=setup, clock=time.thread_time_ns)
    record(benchmark, 1, cpu_s, **info)
    return result
