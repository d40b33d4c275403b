"""libpcap through ctypes (optional): compile a tcpdump filter expression to classic BPF
(`pcap_open_dead` + `pcap_compile`) and run libpcap's own interpreter (`bpf_filter`, used as the
baseline in benchmarks and as an independent check in tests).

Without libpcap every entry point raises `BPFError` saying so; `available()` tells beforehand.
Nothing here converts or runs eBPF.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

from ..errors import BPFError

DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


_LIB = None
_LOCK = threading.Lock()          # pcap_compile is not thread-safe in old libpcap versions


def _lib():
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("pcap")
        if name is None:
            raise BPFError("libpcap is not installed (needed to compile filter expressions; "
                           "install libpcap, e.g. apt-get install libpcap0.8)")
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(BpfProgram), ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.bpf_filter.restype = ctypes.c_uint
        lib.bpf_filter.argtypes = [ctypes.POINTER(BpfInsn), ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        _LIB = lib
    return _LIB


def available() -> bool:
    try:
        _lib()
        return True
    except (BPFError, OSError):
        return False


def compile_insns(expr: str, linktype: int = DLT_EN10MB, snaplen: int = 65535, optimize: bool = True,
                  netmask: int = PCAP_NETMASK_UNKNOWN) -> list[tuple[int, int, int, int]]:
    """The classic BPF program libpcap compiles `expr` to, as (code, jt, jf, k) tuples."""
    if not isinstance(expr, str):
        raise BPFError(f"filter expression must be a string, not {type(expr).__name__}")
    lib = _lib()
    with _LOCK:
        p = lib.pcap_open_dead(linktype, snaplen)
        if not p:
            raise BPFError(f"pcap_open_dead({linktype}, {snaplen}) failed")
        try:
            prog = BpfProgram()
            if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), int(optimize), netmask) != 0:
                msg = lib.pcap_geterr(p).decode(errors="replace")
                raise BPFError(f"cannot compile filter {expr!r}: {msg}")
            try:
                return [(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[:prog.bf_len]]
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(p)


class PcapFilter:
    """libpcap's interpreter over one program: `f(packet) -> u32`, `f.run_many(data, offsets, lengths)`."""

    def __init__(self, insns):
        self._lib = _lib()
        self.insns = (BpfInsn * len(insns))(*[BpfInsn(*i) for i in insns])

    def __call__(self, packet) -> int:
        buf = bytes(packet)
        return self._lib.bpf_filter(self.insns, buf, len(buf), len(buf))

    def run_many(self, data, offsets, lengths):
        """bpf_filter over every packet of a numpy buffer (a Python loop around one C call per packet)."""
        import numpy as np
        base = data.ctypes.data
        f, insns = self._lib.bpf_filter, self.insns
        out = np.empty(len(offsets), dtype=np.uint32)
        for i, (o, n) in enumerate(zip(offsets.tolist(), lengths.tolist())):
            out[i] = f(insns, base + o, n, n)
        return out
