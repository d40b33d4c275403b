"""trace_printk (helper 6) and the trace buffer it writes to, the user-space /sys/kernel/debug/tracing/trace_pipe.

What lives here:
- the format rules of the seed (`parse_format`: a walk over the format that accepts exactly what the
  kernel's bpf_trace_printk accepts, with the kernel's <linux/ctype.h> classes as a table) and the rendering
  of accepted formats (`render`);
- `TraceBuffer`: one process-wide ring of fixed-size raw records (timestamp, pid, tid, cpu, the format bytes
  and r3..r5) in memory that native code writes under a pthread mutex, so the JIT's twin appends without any
  Python call; the host reads it line by line (`read_lines`), formatting happens at read time;
- the helper: its Python implementation and its native twin (`emit_trace_printk`, LLVM IR that builtin.py
  compiles into its support library and registers as "trace_printk"). Both validate the format themselves
  and append the same record; the length they return is the length of the message `render` produces.
What must not live here: other helpers (builtin.py), maps, the runtime.

Line format (one line per call, like trace_pipe; docs/runtime.md):
    "{comm:>16}-{tid:<7} [{cpu:03d}] {sec:5d}.{usec:06d}: bpf_trace_printk: {message}"
comm is the thread's name (/proc/self/task/TID/comm at read time, "<...>" once the thread is gone), tid the
thread id (the kernel's task pid), cpu the CPU the call ran on, the time is CLOCK_MONOTONIC (ktime_get_ns)
and one trailing newline of the message is dropped. The returned length counts the whole message.
"""
from __future__ import annotations

import ctypes
import os
import string
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from ..errors import RuntimeFault
from ..memory import PERM_R
from ..jit.irlib import I8, I32, I64, I64P, c64, region_check_fn
from .irhelper import IRHelper

EINVAL = 22
MAX_FMT = 512             # the most format bytes the kernel's verifier admits (MAX_BPF_STACK); more: -EINVAL
MAX_CONVERSIONS = 3
PTR_WIDTH = 16            # %p: 16 zero-padded hex digits; NULL prints "(null)" right-aligned in 16 columns

# ---- <linux/ctype.h>, as a table: bit 1 = may appear in the format (isprint || isspace, and isascii);
# bit 2 = may follow "%p" (isspace || ispunct || NUL; the kernel's Latin-1 classes included) ----
TEXT, AFTER_P = 1, 2
_SPACE = set(b" \t\n\v\f\r") | {0xA0}
_PUNCT = set(string.punctuation.encode()) | set(range(0xA1, 0xC0)) | {0xD7, 0xF7}
CTYPE = bytes((TEXT if (0x20 <= c <= 0x7E or c in _SPACE) and c < 0x80 else 0) |
              (AFTER_P if c in _SPACE or c in _PUNCT or c == 0 else 0) for c in range(256))
KINDS = {ord("d"): 0, ord("u"): 1, ord("x"): 2}          # conversion letter -> kind code (IR and Python)
KIND_P = 3


# ------------------------------------------------------------------------------------ format rules
@dataclass(frozen=True)
class Conversion:
    kind: int        # KINDS value or KIND_P
    mod: int         # number of 'l' (the seed's mod[]; %p counts as one)
    arg: int         # 0..2: r3, r4, r5


def parse_format(fmt: bytes) -> list | None:
    """The pieces of a format (bytes literals and Conversions) or None when the seed rejects it.

    `fmt` is the whole fmt_size bytes; its last byte must be NUL. This is the seed's loop step by step: the
    byte after "%p" is consumed by the check (printed literally; a NUL there ends the output while the
    rest is still checked), bytes inside a conversion are not checked for printability.
    """
    if not fmt or fmt[-1] != 0:
        return None
    n = len(fmt) - 1
    pieces: list = []
    cnt, i, ended = 0, 0, False

    def literal(c: int) -> None:
        if not ended:
            pieces.append(bytes((c,)))

    while i < n:
        c = fmt[i]
        if not CTYPE[c] & TEXT:
            return None
        if c != ord("%"):
            literal(c)
            i += 1
            continue
        if cnt >= MAX_CONVERSIONS:
            return None
        i += 1
        if fmt[i] == ord("p"):
            i += 1
            after = fmt[i]
            if not CTYPE[after] & AFTER_P:
                return None
            if not ended:
                pieces.append(Conversion(KIND_P, 1, cnt))
            if after == 0:
                ended = True
            literal(after)
            cnt += 1
            i += 1
            continue
        mod = 0
        for _ in range(2):
            if fmt[i] == ord("l"):
                mod += 1
                i += 1
        kind = KINDS.get(fmt[i])
        if kind is None:
            return None
        if not ended:
            pieces.append(Conversion(kind, mod, cnt))
        cnt += 1
        i += 1
    return pieces


def _convert(conv: Conversion, value: int) -> bytes:
    """One conversion, with the seed's argument casts: mod 0 -> (u32), printed as int/unsigned int."""
    if conv.kind == KIND_P:
        return b"(null)".rjust(PTR_WIDTH) if value == 0 else b"%016x" % value
    v = value & 0xFFFFFFFF if conv.mod == 0 else value & 0xFFFFFFFFFFFFFFFF
    bits = 32 if conv.mod == 0 else 64
    if conv.kind == KINDS[ord("d")] and v >> (bits - 1):
        v -= 1 << bits
    return b"%x" % v if conv.kind == KINDS[ord("x")] else b"%d" % v


def render(pieces: list, args) -> bytes:
    """The message of an accepted format with r3..r5 = args."""
    return b"".join(p if isinstance(p, bytes) else _convert(p, args[p.arg]) for p in pieces)


# ------------------------------------------------------------------------------------ the trace buffer
SLOT = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("tid", "<u4"), ("cpu", "<u4"), ("size", "<u4"),
                 ("args", "<u8", (3,)), ("fmt", "u1", (MAX_FMT,))])
SLOT_FIELDS: dict[str, tuple] = dict(SLOT.fields or {})          # name -> (dtype, offset)
HDR = 128                 # pthread_mutex_t at 0, then u64 head, tail, lost
H_HEAD, H_TAIL, H_LOST = 64, 72, 80
NSLOTS = 2048             # a power of two; the oldest records are overwritten (and counted lost) when full
RING_SYMBOL = "bpfjit_trace_ring"

_LIBC = ctypes.CDLL(None)
_LIBC.sched_getcpu.restype = ctypes.c_int


@dataclass(frozen=True)
class TraceRecord:
    ts_ns: int
    pid: int
    tid: int
    cpu: int
    message: bytes
    comm: str

    @property
    def line(self) -> str:
        text = self.message[:-1] if self.message.endswith(b"\n") else self.message
        sec, nsec = divmod(self.ts_ns, 1_000_000_000)
        return (f"{self.comm:>16}-{self.tid:<7} [{self.cpu:03d}] {sec:5d}.{nsec // 1000:06d}: "
                f"bpf_trace_printk: {text.decode('latin-1')}")


def _comm_of(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("latin-1")
    except OSError:
        return "<...>"


class TraceBuffer:
    """The process-wide trace ring (one instance, TRACE: the native twin writes to it by symbol). Writers
    (the Python helper, JIT code in any thread) append raw records under the mutex in the ring's header;
    `read`/`read_lines` consume them like reading trace_pipe."""

    def __init__(self):
        self.nslots = NSLOTS
        self.mem = np.zeros(HDR + NSLOTS * SLOT.itemsize, dtype=np.uint8)
        self.addr = self.mem.ctypes.data
        self._mutex = ctypes.c_void_p(self.addr)
        _LIBC.pthread_mutex_init(self._mutex, None)
        self._hdr = self.mem[:HDR].view(np.uint64)
        self.slots = self.mem[HDR:].view(SLOT)

    # ---- writing (Python twin; the IR twin writes the same fields) ----
    def append(self, fmt: bytes, args) -> None:
        ts = time.monotonic_ns()
        pid, tid, cpu = os.getpid(), threading.get_native_id(), _LIBC.sched_getcpu() & 0xFFFFFFFF
        with self._locked():
            head = int(self._hdr[H_HEAD // 8])
            rec = self.slots[head & (self.nslots - 1)]
            rec["ts"], rec["pid"], rec["tid"], rec["cpu"], rec["size"] = ts, pid, tid, cpu, len(fmt)
            rec["args"] = [a & 0xFFFFFFFFFFFFFFFF for a in args]
            rec["fmt"][:len(fmt)] = np.frombuffer(fmt, dtype=np.uint8)
            self._advance(head + 1)

    def _advance(self, head: int) -> None:
        self._hdr[H_HEAD // 8] = head
        if head - int(self._hdr[H_TAIL // 8]) > self.nslots:
            self._hdr[H_TAIL // 8] = head - self.nslots
            self._hdr[H_LOST // 8] += 1

    @contextmanager
    def _locked(self):
        """The ring's pthread mutex (ctypes releases the GIL while waiting for it)."""
        _LIBC.pthread_mutex_lock(self._mutex)
        try:
            yield
        finally:
            _LIBC.pthread_mutex_unlock(self._mutex)

    # ---- reading ----
    def _take(self) -> np.ndarray:
        with self._locked():
            head, tail = int(self._hdr[H_HEAD // 8]), int(self._hdr[H_TAIL // 8])
            idx = np.arange(tail, head) & (self.nslots - 1)
            raw = self.slots[idx].copy()
            self._hdr[H_TAIL // 8] = head
        return raw

    def read(self) -> list[TraceRecord]:
        """Consume every pending record (oldest first)."""
        comms: dict[int, str] = {}
        out = []
        for rec in self._take():
            fmt = rec["fmt"][:int(rec["size"])].tobytes()
            tid = int(rec["tid"])
            if tid not in comms:
                comms[tid] = _comm_of(tid)
            out.append(TraceRecord(int(rec["ts"]), int(rec["pid"]), tid, int(rec["cpu"]),
                                   render(parse_format(fmt) or [], [int(a) for a in rec["args"]]), comms[tid]))
        return out

    def read_lines(self) -> list[str]:
        """Consume every pending record as a trace_pipe line."""
        return [r.line for r in self.read()]

    def clear(self) -> None:
        self._take()
        with self._locked():
            self._hdr[H_LOST // 8] = 0

    @property
    def pending(self) -> int:
        with self._locked():
            return int(self._hdr[H_HEAD // 8] - self._hdr[H_TAIL // 8])

    @property
    def lost(self) -> int:
        """Records overwritten before they were read."""
        return int(self._hdr[H_LOST // 8])


TRACE = TraceBuffer()
llvm.add_symbol(RING_SYMBOL, TRACE.addr)


# ------------------------------------------------------------------------------------ the helper
def trace_printk(ctx, fmt_addr, fmt_size, r3=0, r4=0, r5=0) -> int:
    """Helper 6: append a message to the trace buffer; its length, or -EINVAL (nothing appended)."""
    if fmt_size == 0 or fmt_size > MAX_FMT:
        return -EINVAL
    fmt = ctx.aspace.read_bytes(fmt_addr, fmt_size)
    if fmt is None:
        raise RuntimeFault("load", -1, "trace_printk format outside readable memory", fmt_addr, fmt_size)
    pieces = parse_format(fmt)
    if pieces is None:
        return -EINVAL
    TRACE.append(fmt, (r3, r4, r5))
    return len(render(pieces, (r3, r4, r5)))


# ---- native twin ----
def _table(module: ir.Module) -> ir.GlobalVariable:
    g = module.globals.get("bpf_trace_ctype")
    if g is None:
        ty = ir.ArrayType(I8, 256)
        g = ir.GlobalVariable(module, ty, "bpf_trace_ctype")
        g.initializer = ir.Constant(ty, bytearray(CTYPE))
        g.global_constant = True
        g.linkage = "internal"
    return g


def _ndigits_fn(module: ir.Module) -> ir.Function:
    """bpf_trace_ndigits(v, base) -> digits of v in base (at least 1)."""
    fn = module.globals.get("bpf_trace_ndigits")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(I64, [I64, I64]), "bpf_trace_ndigits")
    fn.linkage = "internal"
    v, base = fn.args
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    x, n = b.phi(I64), b.phi(I64)
    x.add_incoming(v, entry)
    n.add_incoming(c64(1), entry)
    more = b.icmp_unsigned(">=", x, base)
    x.add_incoming(b.udiv(x, base), loop)
    n.add_incoming(b.add(n, c64(1)), loop)
    b.cbranch(more, loop, done)
    b.position_at_end(done)
    b.ret(n)
    return fn


def _conv_len_fn(module: ir.Module) -> ir.Function:
    """bpf_trace_conv_len(value, kind, mod) -> length of one d/u/x conversion (as `_convert`)."""
    fn = module.globals.get("bpf_trace_conv_len")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(I64, [I64, I64, I64]), "bpf_trace_conv_len")
    fn.linkage = "internal"
    v, kind, mod = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    is32 = b.icmp_unsigned("==", mod, c64(0))
    u = b.select(is32, b.and_(v, c64(0xFFFFFFFF)), v)
    s = b.select(is32, b.sext(b.trunc(v, I32), I64), v)
    neg = b.and_(b.icmp_unsigned("==", kind, c64(KINDS[ord("d")])), b.icmp_signed("<", s, c64(0)))
    mag = b.select(neg, b.sub(c64(0), s), u)
    base = b.select(b.icmp_unsigned("==", kind, c64(KINDS[ord("x")])), c64(16), c64(10))
    b.ret(b.add(b.call(_ndigits_fn(module), [mag, base]), b.zext(neg, I64)))
    return fn


def emit_trace_printk(module: ir.Module, fn: ir.Function, checked: bool) -> None:
    """The native twin of trace_printk (compiled into builtin's support library)."""
    h = IRHelper(module, fn)
    b = h.b
    fmt, size, r3, r4, r5 = fn.args[1:]
    ctype = _table(module)
    i, cnt, length, ended = (h.var(n) for n in ("i", "cnt", "len", "ended"))
    blk = {n: fn.append_basic_block(n) for n in ("check", "scan", "head", "body", "lit", "pct", "pconv",
                                                 "conv", "accept", "einval", "fault")}
    bad_size = b.or_(b.icmp_unsigned("==", size, c64(0)), b.icmp_unsigned(">", size, c64(MAX_FMT)))
    b.cbranch(bad_size, blk["einval"], blk["check"])
    b.position_at_end(blk["check"])
    ok = b.call(region_check_fn(module), [h.st, fmt, size, c64(PERM_R)])
    b.cbranch(ok, blk["scan"], blk["fault"])

    b.position_at_end(blk["scan"])
    n = b.sub(size, c64(1))

    def byte(idx):
        return b.zext(b.load(b.inttoptr(b.add(fmt, idx), I8.as_pointer())), I64)

    def cls(c, bit):
        p = b.gep(ctype, [ir.Constant(I32, 0), c])
        return b.icmp_unsigned("!=", b.and_(b.load(p), ir.Constant(I8, bit)), ir.Constant(I8, 0))

    def grow(amount):   # the message grows only until a NUL after %p ended it
        b.store(b.add(b.load(length), b.select(b.icmp_unsigned("!=", b.load(ended), c64(0)), c64(0), amount)),
                length)

    b.cbranch(b.icmp_unsigned("!=", byte(n), c64(0)), blk["einval"], blk["head"])
    b.position_at_end(blk["head"])
    b.cbranch(b.icmp_unsigned("<", b.load(i), n), blk["body"], blk["accept"])

    b.position_at_end(blk["body"])
    c = byte(b.load(i))
    not_text = b.not_(cls(c, TEXT))
    cont = fn.append_basic_block("text_ok")
    b.cbranch(not_text, blk["einval"], cont)
    b.position_at_end(cont)
    b.cbranch(b.icmp_unsigned("==", c, c64(ord("%"))), blk["pct"], blk["lit"])

    b.position_at_end(blk["lit"])
    grow(c64(1))
    b.store(b.add(b.load(i), c64(1)), i)
    b.branch(blk["head"])

    b.position_at_end(blk["pct"])
    k = b.load(cnt)
    cont = fn.append_basic_block("cnt_ok")
    b.cbranch(b.icmp_unsigned(">=", k, c64(MAX_CONVERSIONS)), blk["einval"], cont)
    b.position_at_end(cont)
    arg = b.select(b.icmp_unsigned("==", k, c64(0)), r3, b.select(b.icmp_unsigned("==", k, c64(1)), r4, r5))
    i1 = b.add(b.load(i), c64(1))
    c1 = byte(i1)
    b.cbranch(b.icmp_unsigned("==", c1, c64(ord("p"))), blk["pconv"], blk["conv"])

    b.position_at_end(blk["pconv"])
    i2 = b.add(i1, c64(1))
    c2 = byte(i2)
    cont = fn.append_basic_block("after_p_ok")
    b.cbranch(cls(c2, AFTER_P), cont, blk["einval"])
    b.position_at_end(cont)
    nonnul = b.icmp_unsigned("!=", c2, c64(0))
    grow(b.add(c64(PTR_WIDTH), b.zext(nonnul, I64)))
    b.store(b.or_(b.load(ended), b.zext(b.not_(nonnul), I64)), ended)
    b.store(b.add(k, c64(1)), cnt)
    b.store(b.add(i2, c64(1)), i)
    b.branch(blk["head"])

    b.position_at_end(blk["conv"])
    l1 = b.zext(b.icmp_unsigned("==", c1, c64(ord("l"))), I64)
    i2 = b.add(i1, l1)
    l2 = b.zext(b.icmp_unsigned("==", byte(i2), c64(ord("l"))), I64)
    i3 = b.add(i2, l2)
    c3 = byte(i3)
    kind = c64(-1)
    for letter, code in KINDS.items():
        kind = b.select(b.icmp_unsigned("==", c3, c64(letter)), c64(code), kind)
    cont = fn.append_basic_block("kind_ok")
    b.cbranch(b.icmp_signed("<", kind, c64(0)), blk["einval"], cont)
    b.position_at_end(cont)
    grow(b.call(_conv_len_fn(module), [arg, kind, b.add(l1, l2)]))
    b.store(b.add(k, c64(1)), cnt)
    b.store(b.add(i3, c64(1)), i)
    b.branch(blk["head"])

    b.position_at_end(blk["accept"])
    _emit_append(h, fmt, size, (r3, r4, r5))
    b.ret(b.load(length))

    b.position_at_end(blk["einval"])
    b.ret(c64(-EINVAL))
    b.position_at_end(blk["fault"])
    h.fault("load", fmt, size)


def _emit_append(h, fmt, size, args) -> None:
    """Append one raw record to the trace ring (the IR side of `TraceBuffer.append`)."""
    b, module = h.b, h.module
    ring = module.globals.get(RING_SYMBOL)
    if ring is None:
        ring = ir.GlobalVariable(module, I8, RING_SYMBOL)
        ring.linkage = "external"
    base = b.ptrtoint(ring, I64)
    ts, pid, tid, cpu = h.ktime_ns(), h.libc_i32("getpid"), h.libc_i32("gettid"), h.libc_i32("sched_getcpu")
    mutex = b.inttoptr(base, I8.as_pointer())
    lock_t = ir.FunctionType(I32, [I8.as_pointer()])
    b.call(h.libc("pthread_mutex_lock", lock_t), [mutex])
    hdr = b.inttoptr(base, I64P)
    head_p, tail_p, lost_p = (b.gep(hdr, [c64(off // 8)]) for off in (H_HEAD, H_TAIL, H_LOST))
    head = b.load(head_p)
    slot = b.add(base, b.add(c64(HDR), b.mul(b.and_(head, c64(TRACE.nslots - 1)), c64(SLOT.itemsize))))

    def put(field: str, value, ty, index: int = 0):
        off = SLOT_FIELDS[field][1] + index * ty.width // 8
        b.store(b.trunc(value, ty) if ty.width < 64 else value, b.inttoptr(b.add(slot, c64(off)), ty.as_pointer()))

    put("ts", ts, I64)
    for name, v in (("pid", pid), ("tid", tid), ("cpu", cpu), ("size", size)):
        put(name, v, I32)
    for j, a in enumerate(args):
        put("args", a, I64, j)
    h.memmove(b.add(slot, c64(SLOT_FIELDS["fmt"][1])), fmt, size)
    new_head = b.add(head, c64(1))
    b.store(new_head, head_p)
    over = b.icmp_unsigned(">", b.sub(new_head, b.load(tail_p)), c64(TRACE.nslots))
    with b.if_then(over, likely=False):
        b.store(b.sub(new_head, c64(TRACE.nslots)), tail_p)
        b.store(b.add(b.load(lost_p), c64(1)), lost_p)
    b.call(h.libc("pthread_mutex_unlock", lock_t), [mutex])


