"""The one interface both engines implement (interp.Interpreter, jit.JITEngine); the VM talks only to it.

An engine is built from a `pipeline.Prepared` program and runs it:
    run(mem, readonly)          one run over the caller's input (a byte buffer, see runenv.ctx_buffer) -> r0
    run_batch(records, perms)   one run per row of a 2-D uint8 array (runenv.records_view) -> uint64 r0 array
    bench(mem, n)               n runs over one input -> the last r0
    last_count                  instructions charged by the meter in the last run
    last_mem                    the memory of the last `run` (bytes input is run on a private copy)
    run_packets(prun)           packet programs: one run per packet of a packets.PacketRun -> uint64 r0 array
How an engine gets there (pre-decoded Python functions, native code with a per-thread fast path) is its own
business. Nothing here executes instructions.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .runenv import RunEnv


class Engine(ABC):
    name = ""

    def __init__(self, prepared):
        self.prepared = prepared
        self.prog = prepared.program
        self.config = prepared.config
        self.registry = prepared.helpers
        self.env = RunEnv(prepared)

    @abstractmethod
    def run(self, mem=None, readonly: bool = False) -> int:
        """Run once over `mem` (None, or a byte buffer the program type accepts); returns r0."""

    @abstractmethod
    def run_batch(self, records: np.ndarray, perms: int) -> np.ndarray:
        """One run per row of `records` (2-D uint8, C-contiguous); uint64 array of r0. A fault raises
        RuntimeFault with `.record` set to the row that faulted."""

    @abstractmethod
    def bench(self, mem, n: int) -> int:
        """n runs over the same input; the last r0 (0 when n == 0)."""

    @abstractmethod
    def run_packets(self, prun) -> np.ndarray:
        """One run per packet of `prun` (packets.PacketRun: packets, descriptors, internal context); uint64
        array of r0. A fault raises RuntimeFault with `.record` set to the packet's index."""

    @property
    @abstractmethod
    def last_count(self) -> int | None:
        """Instructions the meter charged in the last run (metered configurations)."""

    @property
    @abstractmethod
    def last_mem(self) -> np.ndarray | None:
        """The memory of the last `run` as a uint8 array, None if it had none."""
