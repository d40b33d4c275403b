"""How the suite times things: choosing a repeat count n so one timed call takes a few milliseconds, timing
through pytest-benchmark's `pedantic` mode, and recording per-execution figures in `extra_info`
(what report.py reads). Nothing here knows about particular programs or engines.

Figures: `ns_per_exec` is the fastest round divided by the executions in it (the least disturbed by other
work on the machine), `ns_per_exec_median` the median round likewise.
"""
from __future__ import annotations

import time
from typing import Callable

TARGET_S = 0.004        # one timed call of a native repeat loop
MIN_PROBE_S = 0.0005    # calibration stops doubling n once a call takes this long


def calibrate(call: Callable[[int], object], target_s: float = TARGET_S, n_max: int = 1 << 26) -> int:
    """A repeat count n for which call(n) takes about target_s (at least 1)."""
    n = 1
    while True:
        t0 = time.perf_counter()
        call(n)
        dt = time.perf_counter() - t0
        if dt >= MIN_PROBE_S or n >= n_max:
            return max(1, min(n_max, round(n * target_s / dt)))
        n *= 2


def record(benchmark, per_call: int, **info) -> None:
    """Store the figures of the finished measurement: per_call executions happened in each timed call."""
    benchmark.extra_info.update(info, per_call=per_call)
    meta = benchmark.stats
    if not meta:          # --benchmark-disable: nothing was timed
        return
    st = meta.stats
    benchmark.extra_info["ns_per_exec"] = st.min / per_call * 1e9
    benchmark.extra_info["ns_per_exec_median"] = st.median / per_call * 1e9


def time_repeats(benchmark, call: Callable[[int], int], *, rounds: int, n: int | None = None,
                 target_s: float = TARGET_S, **info) -> int:
    """Time call(n) (a loop running the workload n times) for `rounds` rounds; returns its last result."""
    n = n if n is not None else calibrate(call, target_s)
    result = benchmark.pedantic(call, args=(n,), rounds=rounds, warmup_rounds=1, iterations=1)
    record(benchmark, n, **info)
    return result


def time_calls(benchmark, call: Callable[[], object], *, rounds: int, iterations: int, setup=None,
               **info):
    """Time a Python-level call (iterations per round; with setup, one per round); returns its result."""
    if setup is not None:
        result = benchmark.pedantic(call, setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)
    else:
        result = benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=iterations)
    record(benchmark, 1, **info)
    return result
