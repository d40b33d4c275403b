"""`VM`: one loaded program bound to an engine (interpreter or JIT), a Config, a helper registry and a runtime.

The VM is thin: it sends the program through the load pipeline (pipeline.prepare: validate, resolve, and
later verify), builds the engine (both implement engine.Engine), checks the caller's arguments once (the
trust boundary: runenv's input checks, run counts), keeps one program running per thread (the seed's
bpf_prog_active), and forwards `run` / `run_batch` / `bench` to the engine on one path each.
What a run sees (context, stack, regions, entry registers) is built by runenv.py for both engines.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import watchdog
from .errors import BPFError, ConfigError
from .pipeline import prepare
from .program import DEFAULT_CONFIG, Config, Program
from .runenv import MAX_BENCH, _TLS, as_bytes_view, check_count, exclusive, records_view, thread_stack

ENGINES = ("interp", "jit")
__all__ = ["VM", "ENGINES", "run", "thread_stack"]


def _engine_class(name: str):
    if name == "interp":
        from .interp import Interpreter
        return Interpreter
    if name == "jit":
        from .jit import JITEngine
        return JITEngine
    raise BPFError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


class VM:
    """A program ready to run. `engine` is "interp" (reference interpreter) or "jit" (LLVM)."""

    def __init__(self, program: Program, engine: str = "interp", config: Config | None = None,
                 helpers=None, runtime=None):
        cls = _engine_class(engine)
        _check_type(helpers, "helpers", "bpfjit.helpers.HelperRegistry", ".helpers.registry", "HelperRegistry")
        _check_type(runtime, "runtime", "bpfjit.runtime.Runtime", ".runtime", "Runtime")
        self.prepared = prepare(program, config, helpers, runtime)
        self.program = program
        self.engine_name = engine
        self.config = self.prepared.config
        self.runtime = runtime
        self.helpers = self.prepared.helpers
        self.ptype = self.prepared.ptype
        self.engine = cls(self.prepared)
        self.last_run: Any = None       # packets.PacketRun of the last run_packets (packet programs)

    @property
    def safety(self) -> str:
        """The mode this VM actually runs in: "verified" (proven safe: native code without runtime checks),
        "checked" (runtime checks) or "trusted" (Config(safety="trusted"))."""
        return self.prepared.safety

    @property
    def verifier_error(self):
        """Why Config(safety="auto") runs this program checked (a VerifierError), None when proven."""
        return self.prepared.verifier_error

    def run(self, mem=None, *, readonly: bool = False, timeout: float | None = None) -> int:
        """Run once. mem (bytes-like or numpy array, per the program type) is the context: for raw programs
        r1 = its address and r2 = its length. numpy arrays, bytearrays and writable memoryviews are used in
        place; bytes are copied into a private buffer (`last_mem` shows the memory after the run).

        timeout (seconds): the run stops with RuntimeFault(kind="timeout") once it has taken longer (checked
        at every loop back-edge; code the verifier proved or Config(safety="trusted") code is not stopped,
        see README "Safety"). Ctrl-C stops a run on the main thread with KeyboardInterrupt.

        One program runs per thread at a time (the kernel's bpf_prog_active): a nested run, e.g. from a
        Python helper, returns 0 without running.
        """
        if self.ptype.packet is not None:
            return self._run_packet(mem, readonly, timeout)
        tls = _TLS.__dict__
        if tls.get("active"):
            return 0
        tls["active"] = True
        try:
            if timeout is None:
                return self.engine.run(mem, readonly)
            req = watchdog.arm(watchdog.check_timeout(timeout))
            try:
                return self.engine.run(mem, readonly)
            finally:
                watchdog.disarm(req)
        finally:
            tls["active"] = False

    @property
    def last_mem(self):
        """The memory of the last `run` (a numpy uint8 array), None if it had no mem. For packet programs:
        the packet as the program left it."""
        if self.ptype.packet is not None:
            if self.last_run is None or not self.last_run.n:
                return None
            p = self.last_run.result()
            return p.data[p.offsets[0]:p.offsets[0] + p.lengths[0]]
        return self.engine.last_mem

    # ---- packet programs ----
    def run_packets(self, packets, *, readonly: bool = False, timeout: float | None = None) -> np.ndarray:
        """Run a packet program (socket_filter, xdp, sched_cls, sched_act, cgroup_skb) once per packet;
        returns a uint64 array of r0 (the verdicts). packets: a bpfjit.pcap.Packets (what pcap.read
        returns), a (data, offsets, lengths) tuple of numpy arrays, a list of bytes-like packets, or a 2-D
        uint8 array (one packet per row). The JIT runs the whole batch in one native call. Afterwards
        `last_packets` holds the packets as the program left them (XDP programs get head- and tailroom so
        adjust_head/meta/tail work) and `redirects` where redirect helpers sent them. A fault raises
        RuntimeFault with `.record` set to the packet's index. timeout (seconds) bounds the whole run, as
        in `run`."""
        if self.ptype.packet is None:
            raise ConfigError(f"run_packets runs packet programs (socket_filter, xdp, sched_cls, sched_act, "
                              f"cgroup_skb); this program is of type {self.ptype.name!r}", "program")
        from .packets import PacketRun
        prun = PacketRun(self.prepared, packets, readonly)
        seconds = watchdog.check_timeout(timeout) if timeout is not None else None
        with exclusive() as ok:
            if not ok:
                return np.zeros(prun.n, dtype=np.uint64)
            self.last_run = prun
            return _timed(seconds, self.engine.run_packets, prun)

    @property
    def last_packets(self):
        """The packets of the last run_packets as the program left them (a bpfjit.pcap.Packets)."""
        return self.last_run.result() if self.last_run is not None else None

    @property
    def redirects(self) -> dict:
        """packet index -> ("ifindex", ifindex, flags) | ("map", map name, key) of the last run_packets."""
        return dict(self.last_run.redirects) if self.last_run is not None else {}

    def _run_packet(self, mem, readonly: bool, timeout: float | None = None) -> int:
        if mem is None:
            raise ConfigError(f"a {self.ptype.name} program runs over a packet: pass its bytes", "mem")
        buf, _ = as_bytes_view(mem)
        if isinstance(mem, (bytes, memoryview)) and not buf.flags.writeable:
            buf = buf.copy()
        return int(self.run_packets(buf.reshape(1, -1), readonly=readonly, timeout=timeout)[0])

    def run_batch(self, records, *, readonly: bool = False, timeout: float | None = None) -> np.ndarray:
        """Run once per record; returns a uint64 array of r0 values (r1 = record address, r2 = its size).

        records: a C-contiguous numpy array whose first axis enumerates records (2-D uint8, or 1-D of a
        structured dtype). The JIT runs the whole batch in one native call. A fault raises RuntimeFault
        with `.record` set to the index of the faulting record. timeout (seconds) bounds the whole batch, as
        in `run`.
        """
        if self.ptype.packet is not None:        # one packet per record
            return self.run_packets(records.reshape(len(records), -1).view(np.uint8) if isinstance(
                records, np.ndarray) and records.ndim >= 1 else records, readonly=readonly, timeout=timeout)
        flat, perms = records_view(self.ptype, records, readonly, self.config.mem_size)
        seconds = watchdog.check_timeout(timeout) if timeout is not None else None
        with exclusive() as ok:
            if not ok:
                return np.zeros(len(flat), dtype=np.uint64)
            return _timed(seconds, self.engine.run_batch, flat, perms)

    def bench(self, mem=None, n: int = 1000, *, timeout: float | None = None) -> int:
        """Run n times on the same mem (natively in one call for the JIT); returns the last r0. timeout
        (seconds) bounds all n runs, as in `run`."""
        n = check_count(n, "n", MAX_BENCH)
        if self.ptype.packet is not None:        # n runs over the same packet, in native chunks
            buf, _ = as_bytes_view(mem if mem is not None else b"")
            buf = buf.copy()
            r0, chunk = 0, 1 << 16
            while n > 0:
                k = min(n, chunk)
                out = self.run_packets((buf, np.zeros(k, np.int64), np.full(k, buf.size, np.int64)),
                                       timeout=timeout)
                r0, n = int(out[-1]), n - k
            return r0
        seconds = watchdog.check_timeout(timeout) if timeout is not None else None
        with exclusive() as ok:
            return _timed(seconds, self.engine.bench, mem, n) if ok else 0

    def test_run(self, data_in=None, ctx_in=None, repeat: int = 1):
        """The kernel's BPF_PROG_TEST_RUN: `repeat` runs on a copy of the input -> TestRunResult(retval,
        data_out, ctx_out, duration ns per run). See testrun.py."""
        from .testrun import test_run
        return test_run(self, data_in=data_in, ctx_in=ctx_in, repeat=repeat)


def _timed(seconds, fn, *args):
    """fn(*args) under a timeout of `seconds` (None: none)."""
    if seconds is None:
        return fn(*args)
    req = watchdog.arm(seconds)
    try:
        return fn(*args)
    finally:
        watchdog.disarm(req)


def _check_type(obj, field: str, what: str, module: str, name: str) -> None:
    """None or an instance of bpfjit's class `name` (imported from `module` only when obj is given)."""
    if obj is None:
        return
    import importlib
    cls = getattr(importlib.import_module(module, __package__), name)
    if not isinstance(obj, cls):
        raise ConfigError(f"must be a {what} or None; got {type(obj).__name__}", field)


def run(program: Program | str | bytes, mem=None, engine: str = "interp", config: Config | None = None,
        **kw) -> int:
    """One-shot convenience: assemble/decode if needed, run once, return r0."""
    if isinstance(program, str):
        program = Program.from_asm(program, config or DEFAULT_CONFIG)
    elif isinstance(program, (bytes, bytearray)):
        program = Program.from_bytes(bytes(program), config or DEFAULT_CONFIG)
    return VM(program, engine, config, **kw).run(mem)
