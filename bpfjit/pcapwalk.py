"""The native record-header walk of classic pcap files with records of varying sizes (pcap.py's fallback
when the vectorised fixed-size walk does not apply): each record's position depends on the previous
record's captured length, so the walk is sequential; doing it in Python costs a struct unpack and list
appends per packet, so it is one small LLVM function instead (built with llvmlite, compiled once per
process on first use, ~10 ms).

    walk(buf, pos, swap, offsets, headers) -> (records found, position reached, status)

writes each record's header position into `offsets` (int64) and copies its 16-byte header into
`headers` ((n, 16) uint8), up to len(offsets) records. status: 0 end of data or output full, 1 a captured
length above MAX_CAPLEN, 2 a truncated record, 3 a truncated header (at the position reached; pcap.py
turns these into PcapError messages). Nothing here knows the file format beyond the record header.
"""
from __future__ import annotations

import ctypes
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from .jit import compiler
from .maps.irutil import I32, I64, Fn, c64

MAX_CAPLEN = 1 << 28
_LOCK = threading.Lock()
_FN = None
_KEEP: list = []


def _build() -> str:
    m = ir.Module(name="bpfjit_pcapwalk")
    # i64 walk(buf, len, pos, swap, offsets, headers, max_n, state) ; state[0] = pos, state[1] = status
    f = Fn(m, "pcap_walk", 8)
    buf, length, pos0, swap, offs, hdrs, max_n, state = f.args
    pos = f.var(pos0)
    n = f.var(0)
    status = f.var(0)
    with f.while_(lambda: f.ult(f.get(n), max_n)) as done:
        p = f.get(pos)
        with f.if_(f.ugt(f.add(p, 16), length)):
            f.put(status, f.sel(f.eq(p, length), 0, 3))
            f.brk(done)
        raw = f.b.load(f.ptr(f.add(buf, p, 8), I32), align=1)
        incl = f.b.zext(f.b.select(f.ne(swap, 0), f.b.bswap(raw), raw), I64)
        with f.if_(f.ugt(incl, MAX_CAPLEN)):
            f.put(status, c64(1))
            f.brk(done)
        with f.if_(f.ugt(f.add(p, 16, incl), length)):
            f.put(status, c64(2))
            f.brk(done)
        i = f.get(n)
        f.st(f.elem(offs, i), p)
        dst = f.add(hdrs, f.mul(i, 16))
        f.st(dst, f.ld(f.add(buf, p), I64, align=1), I64, align=1)
        f.st(f.add(dst, 8), f.ld(f.add(buf, p, 8), I64, align=1), I64, align=1)
        f.put(n, f.add(i, 1))
        f.put(pos, f.add(p, 16, incl))
    f.st(state, f.get(pos))
    f.st(f.add(state, 8), f.get(status))
    f.ret(f.get(n))
    return str(m)


def _fn():
    global _FN
    if _FN is None:
        with _LOCK:
            if _FN is None:
                mod = llvm.parse_assembly(_build())
                mod.verify()
                ee = llvm.create_mcjit_compiler(mod, compiler.new_target_machine(2))
                ee.finalize_object()
                _KEEP.append(ee)
                addr = ee.get_function_address("pcap_walk")
                _FN = ctypes.CFUNCTYPE(ctypes.c_int64, *([ctypes.c_uint64] * 8))(addr)
    return _FN


def walk(buf, pos: int, swap: bool, offsets, headers) -> tuple[int, int, int]:
    import numpy as np
    state = np.zeros(2, dtype=np.int64)
    n = _fn()(buf.ctypes.data, len(buf), pos, int(swap), offsets.ctypes.data, headers.ctypes.data,
              len(offsets), state.ctypes.data)
    return int(n), int(state[0]), int(state[1])
