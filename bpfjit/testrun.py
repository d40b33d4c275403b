"""`VM.test_run`: the kernel's BPF_PROG_TEST_RUN (`bpftool prog run`) for a loaded program, in both engines.

    res = vm.test_run(data_in=b"...", repeat=1000)
    res.retval, res.data_out, res.ctx_out, res.duration     # duration: mean ns per run, as the kernel reports

What the input means per program type (the context a run sees is built by runenv.py as for `VM.run`):
- "raw": the program's mem (r1 = its address, r2 = its length) is `data_in`, or `ctx_in` (the same buffer:
  a raw program's context is its mem). Give one of them; the buffer after the last run comes back as
  `data_out` or `ctx_out` respectively.
- packet types (socket_filter, xdp, sched_cls, sched_act, cgroup_skb): `data_in` is the packet (empty when
  absent), `data_out` the packet after the run (XDP adjust_head/tail included); ctx_in is not supported
  (each run's context is built from the packet, packets.py). The timed repeats run over copies.
- "kprobe": `ctx_in` is the `struct pt_regs` bytes (168; zeroed when absent); data_in is refused, as there is
  no packet. `ctx_out` is the context after the run (kprobe contexts are read-only, so it equals ctx_in).

The input is copied first (the caller's buffer is never changed); all `repeat` runs go through `VM.bench`
(one native loop in the JIT) on that copy, as the kernel repeats on the same data. Nothing here executes
instructions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .runenv import MAX_BENCH, as_bytes_view, check_count

__all__ = ["TestRunResult", "test_run"]


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reports: r0 of the last run, the data/context after it, mean ns per run."""
    __test__ = False            # not a pytest test class

    retval: int
    data_out: bytes | None
    ctx_out: bytes | None
    duration: int
    repeat: int


def _copy(buf, what: str) -> np.ndarray:
    view, _ = as_bytes_view(buf, what)
    return view.copy()


def test_run(vm, data_in=None, ctx_in=None, repeat: int = 1) -> TestRunResult:
    """Run `vm`'s program `repeat` times (0 means 1, as in the kernel) on a copy of the input."""
    repeat = max(1, check_count(repeat, "repeat", MAX_BENCH))
    ptype = vm.ptype
    mem: np.ndarray | None
    if ptype.packet is not None:
        return _packet_test_run(vm, data_in, ctx_in, repeat)
    if ptype.ctx_size is not None:           # a typed context (kprobe): ctx_in only
        if data_in is not None:
            raise ConfigError(f"a {ptype.name} program takes no data_in (its input is the context, "
                              f"{ptype.ctx}); pass ctx_in", "data_in")
        mem = _copy(ctx_in, "ctx_in") if ctx_in is not None else np.zeros(ptype.ctx_size, np.uint8)
        out_is_ctx = True
    else:
        if data_in is not None and ctx_in is not None:
            raise ConfigError(f"a {ptype.name} program's context is its mem: give data_in or ctx_in, not both",
                              "ctx_in")
        src = data_in if data_in is not None else ctx_in
        mem = _copy(src, "ctx_in" if ctx_in is not None else "data_in") if src is not None else None
        out_is_ctx = ctx_in is not None
    if mem is not None and mem.size == 0:
        mem = None
    t0 = time.perf_counter_ns()
    r0 = vm.bench(mem, repeat)
    elapsed = time.perf_counter_ns() - t0
    out = bytes(mem) if mem is not None else (b"" if (ctx_in if out_is_ctx else data_in) is not None else None)
    return TestRunResult(retval=int(r0), data_out=None if out_is_ctx else out, ctx_out=out if out_is_ctx else None,
                         duration=elapsed // repeat, repeat=repeat)


def _packet_test_run(vm, data_in, ctx_in, repeat: int) -> TestRunResult:
    if ctx_in is not None:
        raise ConfigError(f"a {vm.ptype.name} program's context is built from the packet: pass the packet as "
                          "data_in (ctx_in is not supported)", "ctx_in")
    pkt = _copy(data_in if data_in is not None else b"", "data_in")
    r0 = vm.run(pkt.copy())
    out = bytes(vm.last_mem) if vm.last_mem is not None else b""
    t0 = time.perf_counter_ns()
    vm.bench(pkt, repeat)
    elapsed = time.perf_counter_ns() - t0
    return TestRunResult(retval=int(r0), data_out=out, ctx_out=None, duration=elapsed // repeat, repeat=repeat)


test_run.__test__ = False       # type: ignore[attr-defined]  # a library function, not a pytest test
