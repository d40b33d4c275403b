"""Built-in kernel helpers with the kernel's ids, prototypes and GPL flags: the Python implementation of each
and its native twin (LLVM IR; `Helper.native` names it in jit.native_helpers.NATIVE).

The native twins (NATIVE_TWINS, trace_printk's included) are compiled once per process into the support
library (`support()`), and the emitter JIT modules get for each is a call into it: programs stay cheap to
compile and never go through Python. Where the two implementations could diverge (the PRNG), Python calls
the library's function through ctypes, so both engines draw from one generator. Twins call libc directly
(pid, uid, cpu, thread name). Pointer arguments a kernel verifier would have checked (destinations, sizes)
are checked at run time in both engines and in every JIT mode: a bad destination faults "store" at the
call. probe_read's source is the unsafe pointer the helper exists for: unreadable memory gives -EFAULT and
a zeroed destination, as in the kernel.
trace_printk and its trace buffer live in trace.py; map helpers in map_helpers.py; this module holds the
helpers that need no runtime tables. `IRHelper` (emitter conveniences) is shared with trace.py.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

import llvmlite.binding as llvm
from llvmlite import ir

from ..errors import RuntimeFault
from ..memory import PERM_R, PERM_W
from ..jit import target
from ..jit import state as S
from ..jit.irlib import I8, I32, I64, I64P, NATIVE_FN, c64
from ..jit.native_helpers import NATIVE, libc_fn
from .irhelper import IRHelper
from .registry import Helper
from .trace import emit_trace_printk, trace_printk

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
EFAULT, EINVAL = 14, 22
PR_GET_NAME = 16
COMM_LEN = 16             # TASK_COMM_LEN
PRANDOM_SEED = 0x2545F4914F6CDD1D   # unseeded threads start from splitmix64(PRANDOM_SEED ^ tid)

_LIBC = ctypes.CDLL(None)
_LIBC.sched_getcpu.restype = ctypes.c_int
I8P = I8.as_pointer()


# ------------------------------------------------------------------------------ IR conveniences


def _check_dst(ctx, dst: int, size: int) -> None:
    if ctx.aspace.find(dst, size, PERM_W) is None:
        raise RuntimeFault("store", -1, "helper destination outside writable memory", dst, size)


def _readable_from(aspace, addr: int) -> int:
    """Bytes readable from addr to the end of the region holding it (0 if none)."""
    r = aspace.find(addr, 1, PERM_R)
    return r.end - addr if r is not None else 0


def _region_avail_fn(module: ir.Module) -> ir.Function:
    """bpf_region_avail(st, addr, perm) -> bytes from addr to the end of its region with perm (0 if none);
    the IR side of `_readable_from`."""
    fn = module.globals.get("bpf_region_avail")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(I64, [I64P, I64, I64]), "bpf_region_avail")
    fn.linkage = "internal"
    st, addr, perm = fn.args
    entry, loop, body, nxt, yes, no = (fn.append_basic_block(n) for n in
                                       ("entry", "loop", "body", "next", "yes", "no"))
    b = ir.IRBuilder(entry)
    table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
    n = b.load(b.gep(st, [c64(S.NREGIONS)]))
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(c64(0), entry)
    b.cbranch(b.icmp_unsigned("<", i, n), body, no)
    b.position_at_end(body)
    row = b.mul(i, c64(3))
    lo, hi, pm = (b.load(b.gep(table, [b.add(row, c64(k))])) for k in range(3))
    inside = b.and_(b.and_(b.icmp_unsigned(">=", addr, lo), b.icmp_unsigned("<", addr, hi)),
                    b.icmp_unsigned("==", b.and_(pm, perm), perm))
    b.cbranch(inside, yes, nxt)
    b.position_at_end(nxt)
    i.add_incoming(b.add(i, c64(1)), nxt)
    b.branch(loop)
    b.position_at_end(yes)
    b.ret(b.sub(hi, addr))
    b.position_at_end(no)
    b.ret(c64(0))
    return fn


# ------------------------------------------------------------------------------ Python implementations
def ktime_get_ns(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Monotonic clock in nanoseconds (helper 5). The conformance suite's helper 5 only needs to succeed."""
    return time.monotonic_ns()


def probe_read(ctx, dst, size, src, r4=0, r5=0) -> int:
    """Helpers 4, 112, 113: copy size bytes from src; -EFAULT (dst zeroed) if src is not readable."""
    size &= M32
    if size == 0:
        return 0
    _check_dst(ctx, dst, size)
    data = ctx.aspace.read_bytes(src, size)
    ctx.aspace.write_bytes(dst, data if data is not None else bytes(size))
    return 0 if data is not None else -EFAULT


def probe_read_str(ctx, dst, size, src, r4=0, r5=0) -> int:
    """Helpers 45, 114, 115: copy a NUL-terminated string of at most size bytes (NUL included, truncated
    strings end in NUL); its length with the NUL, or -EFAULT (dst zeroed) if a byte to read is unreadable."""
    size &= M32
    if size == 0:
        return 0
    _check_dst(ctx, dst, size)
    avail = _readable_from(ctx.aspace, src)
    data = ctx.aspace.read_bytes(src, min(avail, size)) if avail else b""
    nul = data.find(0)
    if nul >= 0:
        out = data[:nul + 1]
    elif len(data) == size:
        out = data[:-1] + b"\0"
    else:
        ctx.aspace.write_bytes(dst, bytes(size))
        return -EFAULT
    ctx.aspace.write_bytes(dst, out)
    return len(out)


def get_prandom_u32(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Helper 7: the calling thread's xorshift64 generator, in native code shared with the JIT."""
    return support().prandom_u32()


def get_smp_processor_id(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Helper 8: sched_getcpu()."""
    return _LIBC.sched_getcpu() & M32


def get_current_pid_tgid(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Helper 14: tgid << 32 | tid of the calling thread."""
    return os.getpid() << 32 | threading.get_native_id()


def get_current_uid_gid(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Helper 15: gid << 32 | uid (real ids)."""
    return os.getgid() << 32 | os.getuid()


def thread_comm() -> bytes:
    """The calling thread's name (prctl PR_GET_NAME: the kernel's current->comm), without the NUL."""
    buf = ctypes.create_string_buffer(COMM_LEN)
    _LIBC.prctl(PR_GET_NAME, buf, 0, 0, 0)
    return buf.value


def get_current_comm(ctx, buf, size, r3=0, r4=0, r5=0) -> int:
    """Helper 16: the thread's name, truncated to size - 1 bytes and NUL-padded to size bytes; 0."""
    size &= M32
    if size == 0:
        return 0
    _check_dst(ctx, buf, size)
    ctx.aspace.write_bytes(buf, thread_comm()[:size - 1].ljust(size, b"\0"))
    return 0


# ------------------------------------------------------------------------------ native twins
# Each emitter fills `fn` (NATIVE_FN) with the helper's body; these bodies are compiled once, into the
# support library, and JIT code calls them there (see _trampoline).
def _emit_probe_read(module, fn, checked):
    h = IRHelper(module, fn)
    b = h.b
    dst, size, src = fn.args[1], b.and_(fn.args[2], c64(M32)), fn.args[3]
    h.return_if_zero(size)
    h.writable_dst(dst, size)
    readable = h.check(src, size, PERM_R)
    with b.if_else(readable) as (good, bad):
        with good:
            h.memmove(dst, src, size)
        with bad:
            h.memset(dst, 0, size)
    b.ret(b.select(readable, c64(0), c64(-EFAULT)))


def _emit_probe_read_str(module, fn, checked):
    h = IRHelper(module, fn)
    b = h.b
    dst, size, src = fn.args[1], b.and_(fn.args[2], c64(M32)), fn.args[3]
    h.return_if_zero(size)
    h.writable_dst(dst, size)
    avail = b.call(_region_avail_fn(module), [h.st, src, c64(PERM_R)])
    m = b.select(b.icmp_unsigned("<", avail, size), avail, size)
    nul = b.call(h.libc("memchr", ir.FunctionType(I8P, [I8P, I32, I64])), [h.ptr(src), ir.Constant(I32, 0), m])
    found = b.icmp_unsigned("!=", b.ptrtoint(nul, I64), c64(0))
    blocks = {n: fn.append_basic_block(n) for n in ("found", "notfound", "truncated", "efault")}
    b.cbranch(found, blocks["found"], blocks["notfound"])
    b.position_at_end(blocks["found"])
    n = b.add(b.sub(b.ptrtoint(nul, I64), src), c64(1))
    h.memmove(dst, src, n)
    b.ret(n)
    b.position_at_end(blocks["notfound"])
    b.cbranch(b.icmp_unsigned(">=", avail, size), blocks["truncated"], blocks["efault"])
    b.position_at_end(blocks["truncated"])
    last = b.sub(size, c64(1))
    h.memmove(dst, src, last)
    b.store(ir.Constant(I8, 0), h.ptr(b.add(dst, last)))
    b.ret(size)
    b.position_at_end(blocks["efault"])
    h.memset(dst, 0, size)
    b.ret(c64(-EFAULT))


def _emit_prandom(module, fn, checked):
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.call(module.globals["bpfjit_prandom_u32"], []))


def _emit_ktime(module, fn, checked):
    h = IRHelper(module, fn)
    h.b.ret(h.ktime_ns())


def _emit_cpu(module, fn, checked):
    h = IRHelper(module, fn)
    h.b.ret(h.libc_i32("sched_getcpu"))


def _emit_ids(high: str, low: str):
    def emit(module, fn, checked):
        h = IRHelper(module, fn)
        h.b.ret(h.b.or_(h.b.shl(h.libc_i32(high), c64(32)), h.libc_i32(low)))
    return emit


def _emit_comm(module, fn, checked):
    h = IRHelper(module, fn)
    b = h.b
    dst, size = fn.args[1], b.and_(fn.args[2], c64(M32))
    name = b.alloca(ir.ArrayType(I8, COMM_LEN))
    h.return_if_zero(size)
    h.writable_dst(dst, size)
    addr = b.ptrtoint(name, I64)
    h.memset(addr, 0, c64(COMM_LEN))
    prctl = h.libc("prctl", ir.FunctionType(I32, [I32], var_arg=True))
    b.call(prctl, [ir.Constant(I32, PR_GET_NAME), addr, c64(0), c64(0), c64(0)])
    length = b.call(h.libc("strnlen", ir.FunctionType(I64, [I8P, I64])), [h.ptr(addr), c64(COMM_LEN)])
    keep = b.sub(size, c64(1))
    n = b.select(b.icmp_unsigned("<", length, keep), length, keep)
    h.memmove(dst, addr, n)
    h.memset(b.add(dst, n), 0, b.sub(size, n))
    b.ret(c64(0))


NATIVE_TWINS = {   # name: (emitter, may_fault)
    "probe_read": (_emit_probe_read, True), "probe_read_str": (_emit_probe_read_str, True),
    "trace_printk": (emit_trace_printk, True),
    "ktime_get_ns": (_emit_ktime, False),
    "get_prandom_u32": (_emit_prandom, False), "get_smp_processor_id": (_emit_cpu, False),
    "get_current_pid_tgid": (_emit_ids("getpid", "gettid"), False),
    "get_current_uid_gid": (_emit_ids("getgid", "getuid"), False),
    "get_current_comm": (_emit_comm, True),
}


# ------------------------------------------------------------------------------ the native support library
def _splitmix64(b: ir.IRBuilder, z):
    z = b.add(z, c64(0x9E3779B97F4A7C15))
    z = b.mul(b.xor(z, b.lshr(z, c64(30))), c64(0xBF58476D1CE4E5B9))
    z = b.mul(b.xor(z, b.lshr(z, c64(27))), c64(0x94D049BB133111EB))
    z = b.xor(z, b.lshr(z, c64(31)))
    return b.select(b.icmp_unsigned("==", z, c64(0)), c64(PRANDOM_SEED), z)   # xorshift needs state != 0


def _build_support(key: int) -> str:
    """The support library: bpfjit_prandom_u32() and bpfjit_prandom_seed(seed), a xorshift64 generator
    whose state is per thread (pthread key `key`, allocated on first use, freed at thread exit; the high 32
    bits are returned), and bpfjit_NAME(state, r1..r5) for every native twin in NATIVE_TWINS."""
    m = ir.Module("bpfjit_support")
    get = libc_fn(m, "pthread_getspecific", ir.FunctionType(I8P, [I32]))
    state = ir.Function(m, ir.FunctionType(I64P, []), "prandom_state")
    state.linkage = "internal"
    b = ir.IRBuilder(state.append_basic_block("entry"))
    p = b.call(get, [ir.Constant(I32, key)])
    with b.if_then(b.icmp_unsigned("==", b.ptrtoint(p, I64), c64(0)), likely=False):
        fresh = b.call(libc_fn(m, "malloc", ir.FunctionType(I8P, [I64])), [c64(8)])
        tid = b.zext(b.call(libc_fn(m, "gettid", ir.FunctionType(I32, [])), []), I64)
        b.store(_splitmix64(b, b.xor(tid, c64(PRANDOM_SEED))), b.bitcast(fresh, I64P))
        b.call(libc_fn(m, "pthread_setspecific", ir.FunctionType(I32, [I32, I8P])),
               [ir.Constant(I32, key), fresh])
    b.ret(b.bitcast(b.call(get, [ir.Constant(I32, key)]), I64P))

    u32 = ir.Function(m, ir.FunctionType(I64, []), "bpfjit_prandom_u32")
    b = ir.IRBuilder(u32.append_basic_block("entry"))
    sp = b.call(state, [])
    x = b.load(sp)
    for op, k in ((b.shl, 13), (b.lshr, 7), (b.shl, 17)):
        x = b.xor(x, op(x, c64(k)))
    b.store(x, sp)
    b.ret(b.lshr(x, c64(32)))

    seed = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64]), "bpfjit_prandom_seed")
    b = ir.IRBuilder(seed.append_basic_block("entry"))
    b.store(_splitmix64(b, seed.args[0]), b.call(state, []))
    b.ret_void()

    for name, (emitter, _) in NATIVE_TWINS.items():
        emitter(m, ir.Function(m, NATIVE_FN, f"bpfjit_{name}"), True)
    return str(m)


class _Support:
    """The support library, compiled once per process (never cached on disk: it holds the pthread key);
    its functions are bound as JIT symbols."""

    OPT = 2

    def __init__(self):
        key = ctypes.c_uint()
        if _LIBC.pthread_key_create(ctypes.byref(key), ctypes.cast(_LIBC.free, ctypes.c_void_p)) != 0:
            raise OSError("pthread_key_create failed")
        mod = llvm.parse_assembly(_build_support(key.value))
        mod.verify()
        target.optimize(mod, self.OPT, vectorize=False)
        self.ee = target.mcjit(mod, self.OPT)
        names = ["bpfjit_prandom_u32", "bpfjit_prandom_seed"] + [f"bpfjit_{n}" for n in NATIVE_TWINS]
        self.addr = {n: self.ee.get_function_address(n) for n in names}
        for name, a in self.addr.items():
            llvm.add_symbol(name, a)
        self.prandom_u32 = ctypes.CFUNCTYPE(ctypes.c_uint64)(self.addr["bpfjit_prandom_u32"])
        self.prandom_seed = ctypes.CFUNCTYPE(None, ctypes.c_uint64)(self.addr["bpfjit_prandom_seed"])


_SUPPORT: _Support | None = None
_SUPPORT_LOCK = threading.Lock()


def support() -> _Support:
    global _SUPPORT
    with _SUPPORT_LOCK:
        if _SUPPORT is None:
            _SUPPORT = _Support()
    return _SUPPORT


target.symbol_provider("bpfjit_", support)     # what a program loaded from the disk cache links against


def prandom_seed(seed: int) -> None:
    """Seed the calling thread's get_prandom_u32 generator (shared by both engines)."""
    support().prandom_seed(seed & M64)


def _trampoline(name: str):
    """The emitter JIT modules get for twin `name`: a call into the support library."""
    def emit(module, fn, checked):
        support()           # compiled, symbols bound
        target = module.globals.get(f"bpfjit_{name}") or ir.Function(module, NATIVE_FN, f"bpfjit_{name}")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        b.ret(b.call(target, fn.args))
    return emit


for _name, (_emitter, _faults) in NATIVE_TWINS.items():
    NATIVE.add(_name, _trampoline(_name), may_fault=_faults)


# ------------------------------------------------------------------------------ the table
_PROBE = ("ptr_to_uninit_mem", "const_size_or_zero", "anything")   # the modern prototype of 45 and 112..115
# (id, name, Python implementation, argument types, gpl_only, native twin)
_TABLE = (
    (4, "probe_read", probe_read, ("ptr_to_stack", "const_size", "anything"), True, "probe_read"),
    (5, "ktime_get_ns", ktime_get_ns, (), False, "ktime_get_ns"),
    (6, "trace_printk", trace_printk, ("ptr_to_stack", "const_size"), True, "trace_printk"),
    (7, "get_prandom_u32", get_prandom_u32, (), False, "get_prandom_u32"),
    (8, "get_smp_processor_id", get_smp_processor_id, (), False, "get_smp_processor_id"),
    (14, "get_current_pid_tgid", get_current_pid_tgid, (), False, "get_current_pid_tgid"),
    (15, "get_current_uid_gid", get_current_uid_gid, (), False, "get_current_uid_gid"),
    (16, "get_current_comm", get_current_comm, ("ptr_to_uninit_mem", "const_size"), False, "get_current_comm"),
    (45, "probe_read_str", probe_read_str, _PROBE, True, "probe_read_str"),
    (112, "probe_read_user", probe_read, _PROBE, True, "probe_read"),
    (113, "probe_read_kernel", probe_read, _PROBE, True, "probe_read"),
    (114, "probe_read_user_str", probe_read_str, _PROBE, True, "probe_read_str"),
    (115, "probe_read_kernel_str", probe_read_str, _PROBE, True, "probe_read_str"),
)
BUILTIN_HELPERS = [Helper(i, name, py, args, "integer", gpl, native=nat) for i, name, py, args, gpl, nat in _TABLE]
