"""`JITEngine.run_packets`: one native call of `bpf_run_pkts` (lower_pkt.py) over a packets.PacketRun.

Lays out the region table the loop expects (lower_pkt.packet_row: the packet in row 0, or row 2 when a
helper may move its bounds; the context's UAPI part, the stack, the hidden context fields read-only, the
runtime's regions), fills the state block, installs the helper context (its `pkt` is the PacketRun; Python
helpers see the packet being run through the batch view, as run_batch's records), calls the loop with the
GIL released and raises the fault of the packet that faulted (RuntimeFault.record = its index).
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..errors import RuntimeFault
from ..memory import PERM_R, AddressSpace, Region
from ..packets import A
from . import state as S
from .lower_pkt import packet_row

RUN_PKTS_T = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)


class _PacketView:
    """records[i] for the Python-helper callback: packet i's memory at its current bounds."""

    def __init__(self, prun):
        self.prun = prun

    def __getitem__(self, i):
        data, end, meta, _, _ = self.prun.bounds()
        return self.prun.buffer(meta, end) if end > meta else np.zeros(1, np.uint8)[:0]


def addr_of(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def run_packets(engine, prun, tls) -> np.ndarray:
    """tls: the JIT engine's thread-local run state (state block, helper context, batch view)."""
    _TLS = tls
    env = engine.env
    n = prun.n
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    entry = getattr(engine, "_run_pkts", None)
    if entry is None:
        engine._program_module()          # the program module holds bpf_run_pkts next to bpf_entry
        entry = engine._run_pkts = RUN_PKTS_T(engine.compiled.ee.get_function_address("bpf_run_pkts"))
    k, uapi = prun.kctx, prun.uapi
    ctx_r = Region("ctx", k[:uapi], prun.ctx_perms)
    hid_r = Region("ctx_hidden", k[uapi:], PERM_R)
    pkt_r = Region("packet", np.zeros(1, np.uint8), prun.pkt_perms)
    stack = env.stack()
    prow = packet_row(engine.prog)
    order = [pkt_r, stack, ctx_r, hid_r] if prow == 0 else [ctx_r, stack, pkt_r, hid_r]
    aspace = AddressSpace()
    for r in order + list(env.runtime_regions()):
        aspace.add(r)
    first = order[0]
    rows = [(first.start, first.end, first.perms)] + [(r.start, r.end, r.perms) for r in aspace.regions
                                                      if r is not first]
    st, table = engine._state(first.start, first.size, first.perms,
                              table=np.array(rows, dtype=np.uint64).reshape(-1))
    if prow == 2:
        prun.table = table
    prun.region = pkt_r
    hctx = env.helper_ctx(aspace)
    hctx.pkt = prun
    _TLS.ctx = hctx
    _TLS.batch = (_PacketView(prun), pkt_r) if engine._reaches_python else None
    prun.args[A["out"]] = addr_of(out)
    try:
        done = entry(_TLS.state_addr, addr_of(prun.args), n, stack.end)
    finally:
        _TLS.batch = None
        prun.table = None
    engine._last_state = st
    if done < n:
        try:
            engine._raise_fault(st)
        except RuntimeFault as e:
            e.record = int(done)
            raise
    return out
