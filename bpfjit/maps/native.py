"""The map operations, written once in LLVM IR: the runtime module both engines call (LPM tries: native_lpm.py).

`build_module(consts)` returns an llvmlite.ir.Module exporting (every argument and result an i64):

    bpfmap_thread_id()                          stable small id of the calling thread (first use order)
    bpfmap_valid(desc)                          1 if desc is a live descriptor (arena rule, arena.py)
    bpfmap_lookup(desc, key, cpu, flags)        value address or 0
    bpfmap_update(desc, key, value, flags, cpu) 0 or -errno
    bpfmap_delete(desc, key)                    0 or -errno
    bpfmap_get_next_key(desc, key, next)        0 or -errno (key 0: first key)
    bpfmap_clear(desc)                          empty the map (arrays: zero every value)
    bpfmap_rb_reserve(desc, size, flags)        record data address or 0
    bpfmap_rb_commit(data, flags, discard)      submit/discard a reserved record (validated; always 0)
    bpfmap_rb_output(desc, data, size, flags)   0 or -errno
    bpfmap_rb_query(desc, flags)
    bpfmap_perf_output(desc, flags, data, size) 0 or -errno
    bpfmap_push(desc, value, flags)             queue/stack push: 0 or -errno
    bpfmap_pop(desc, out, peek)                 queue/stack pop (peek: keep the element): 0 or -errno

`cpu` selects a per-cpu value copy: an index, layout.CPU_CURRENT (the thread's cpu, copy 0 for other
maps) or, for update, layout.CPU_ALL (the buffer holds NCPUS values STRIDE bytes apart). The callers
(the Python API in this package, the Python helpers, the JIT helper code of emit.py) validate the
descriptor and the pointers first; these functions trust them, except rb_commit which only gets a record
pointer and validates it against the ring table. This module holds the dispatch by kind, array maps, the
lock and the cpu index; hash internals are in native_hash.py, rings and queue/stack in native_ring.py;
compilation and binding in lib.py.

Hash maps: lookups take no lock (chains are walked with acquire loads and at most CAPACITY steps, and
every index is bounds-checked, so a racing update can make a lookup miss but never escape the storage);
updates, deletes, get_next_key, clear and LRU lookups take the descriptor's spinlock. Elements are updated
in place and never move, so value pointers stay valid while the map lives.
"""
from __future__ import annotations

from llvmlite import ir

from . import layout as L
from .irutil import I8P, I32, I64, Fn, c64, libc
from .native_hash import HashOps
from .native_lpm import LpmOps
from .native_ring import QueueStackOps, RingOps

EXPORTS = {   # name -> number of i64 arguments
    "bpfmap_thread_id": 0, "bpfmap_valid": 1, "bpfmap_lookup": 4, "bpfmap_update": 5, "bpfmap_delete": 2,
    "bpfmap_get_next_key": 3, "bpfmap_clear": 1, "bpfmap_rb_reserve": 3, "bpfmap_rb_commit": 3,
    "bpfmap_rb_output": 4, "bpfmap_rb_query": 2, "bpfmap_perf_output": 4, "bpfmap_push": 3, "bpfmap_pop": 3,
}


class _Module(HashOps, RingOps, QueueStackOps, LpmOps):
    """Builds the runtime module: internal building blocks first, then the exported operations."""

    def __init__(self, arena_start: int, arena_end: int, ring_table: int, tls_key: int):
        self.m = ir.Module(name="bpfmap_runtime")
        self.arena = (arena_start, arena_end)
        self.ring_table = ring_table
        self.tls_key = tls_key
        self.next_thread = ir.GlobalVariable(self.m, I64, "bpfmap_next_thread")
        self.next_thread.linkage = "internal"
        self.next_thread.initializer = c64(0)
        self.fns: dict[str, ir.Function] = {}
        for name in ("thread_id", "cpu_index", "lock", "unlock", "hash_key", "key_eq", "copy_value",
                     "hash_find", "hash_prev", "lru_unlink", "lru_push_front", "hash_unlink", "hash_update",
                     "hash_next", "ring_reserve", "commit_hdr", "lpm_truncate", "lpm_lookup", "lpm_update",
                     "lpm_delete"):
            getattr(self, "_" + name)()
        for name in EXPORTS:
            if name != "bpfmap_thread_id":
                getattr(self, "_" + name[len("bpfmap_"):])()

    def new(self, name: str, nargs: int, internal: bool = True, ret=I64) -> Fn:
        f = Fn(self.m, name, nargs, internal=internal, ret=ret)
        self.fns[name] = f.fn
        return f

    def call(self, f: Fn, name: str, *args):
        return f.call(self.fns[name], *args)

    # ---- building blocks ----
    def _thread_id(self):
        f = self.new("bpfmap_thread_id", 0, internal=False)
        key = ir.Constant(I32, self.tls_key)
        v = f.b.ptrtoint(f.b.call(libc(self.m, "pthread_getspecific"), [key]), I64)
        with f.if_(f.eq(v, 0), likely=False):
            n = f.b.atomic_rmw("add", self.next_thread, c64(1), "monotonic")
            f.b.call(libc(self.m, "pthread_setspecific"), [key, f.b.inttoptr(f.add(n, 1), I8P)])
            f.ret(n)
        f.ret(f.b.sub(v, c64(1)))

    def _cpu_index(self):
        """cpu_index(desc, cpu): the value copy `cpu` selects (an index, or the thread's cpu)."""
        f = self.new("cpu_index", 2)
        desc, cpu = f.args
        n = f.f(desc, "NCPUS")
        f.ret_if(f.eq(n, 1), 0)
        with f.if_(f.sge(cpu, 0)):
            f.ret(f.b.urem(cpu, n))
        f.ret(f.b.urem(self.call(f, "bpfmap_thread_id"), n))

    def _lock(self):
        f = self.new("lock", 1)
        p = f.ptr(f.args[0])
        spins = f.var(0)

        def busy():
            res = f.b.cmpxchg(p, c64(0), c64(1), "acquire", "monotonic")
            return f.b.not_(f.b.extract_value(res, 1))
        with f.while_(busy):
            def held():
                return f.ne(f.b.load_atomic(p, "monotonic", 8), 0)
            with f.while_(held):
                n = f.add(f.get(spins), 1)
                f.put(spins, n)
                with f.if_(f.eq(f.b.and_(n, c64(63)), 0)):
                    f.b.call(libc(self.m, "sched_yield"), [])
        f.ret(0)

    def _unlock(self):
        f = self.new("unlock", 1)
        f.st_rel(f.args[0], c64(0))
        f.ret(0)

    def vaddr(self, f: Fn, desc, i, cpu):
        """Address of copy `cpu` of element i's value."""
        slot = f.add(f.mul(i, f.f(desc, "NCPUS")), cpu)
        return f.add(f.f(desc, "DATA"), f.mul(slot, f.f(desc, "STRIDE")))

    def _copy_value(self):
        """copy_value(desc, elem, src, cpu, fresh): store a value into element `elem` (address of copy 0).
        cpu CPU_ALL: NCPUS values from src (STRIDE apart); else one value into copy `cpu`, and when the
        element is fresh the other copies are zeroed."""
        f = self.new("copy_value", 5)
        desc, elem, src, cpu, fresh = f.args
        n, stride, vs = f.f(desc, "NCPUS"), f.f(desc, "STRIDE"), f.f(desc, "VALUE_SIZE")
        with f.if_(f.eq(cpu, L.CPU_ALL)):
            c = f.var(0)
            with f.while_(lambda: f.ult(f.get(c), n)):
                off = f.mul(f.get(c), stride)
                f.memcpy(f.add(elem, off), f.add(src, off), vs)
                f.put(c, f.add(f.get(c), 1))
            f.ret(0)
        with f.if_(f.b.and_(f.ne(fresh, 0), f.ugt(n, 1))):
            f.memset(elem, 0, f.mul(n, stride))
        f.memcpy(f.add(elem, f.mul(cpu, stride)), src, vs)
        f.ret(0)

    def _valid(self):
        f = self.new("bpfmap_valid", 1, internal=False)
        lo, hi = self.arena
        off = f.b.sub(f.args[0], c64(lo))
        f.ret_if(f.uge(off, hi - lo), 0)
        f.ret_if(f.ne(f.b.and_(off, c64(L.DESC_BYTES - 1)), 0), 0)
        f.ret(f.b.zext(f.eq(f.ld(f.args[0]), L.MAGIC), I64))

    def _lookup(self):
        f = self.new("bpfmap_lookup", 4, internal=False)
        desc, key, cpu, flags = f.args
        kind = f.f(desc, "KIND")
        with f.if_(f.eq(kind, L.KIND_ARRAY)):
            idx = f.ld(key, I32, align=1)
            f.ret_if(f.uge(idx, f.f(desc, "MAX_ENTRIES")), 0)
            f.ret(self.vaddr(f, desc, idx, self.call(f, "cpu_index", desc, cpu)))
        f.ret_if(f.ne(kind, L.KIND_HASH), 0)
        with f.if_(f.ne(f.f(desc, "LPM"), 0), likely=False):
            f.ret(self.call(f, "lpm_lookup", desc, key))
        h = self.call(f, "hash_key", key, f.f(desc, "KEY_SIZE"))
        e = f.var(-1)
        touch = f.b.and_(f.ne(f.f(desc, "LRU"), 0), f.eq(f.b.and_(flags, c64(L.LOOKUP_NO_TOUCH)), 0))
        with f.if_else(touch) as (lru, plain):
            with lru:
                lock = f.field_addr(desc, "LOCK")
                self.call(f, "lock", lock)
                f.put(e, self.call(f, "hash_find", desc, key, h))
                with f.if_(f.sge(f.get(e), 0)):
                    self.lru_touch(f, desc, f.get(e))
                self.call(f, "unlock", lock)
            with plain:
                f.put(e, self.call(f, "hash_find", desc, key, h))
        f.ret_if(f.slt(f.get(e), 0), 0)
        f.ret(self.vaddr(f, desc, f.get(e), self.call(f, "cpu_index", desc, cpu)))

    def _update(self):
        f = self.new("bpfmap_update", 5, internal=False)
        desc, key, value, flags, cpu = f.args
        f.ret_if(f.ugt(flags, L.BPF_EXIST), -L.EINVAL)
        kind = f.f(desc, "KIND")
        copy = f.sel(f.eq(cpu, L.CPU_ALL), L.CPU_ALL, self.call(f, "cpu_index", desc, cpu))
        with f.if_(f.eq(kind, L.KIND_ARRAY)):
            idx = f.ld(key, I32, align=1)
            f.ret_if(f.uge(idx, f.f(desc, "MAX_ENTRIES")), -L.E2BIG)
            f.ret_if(f.eq(flags, L.BPF_NOEXIST), -L.EEXIST)
            self.call(f, "copy_value", desc, self.vaddr(f, desc, idx, c64(0)), value, copy, 0)
            f.ret(0)
        f.ret_if(f.ne(kind, L.KIND_HASH), -L.EINVAL)
        with f.if_(f.ne(f.f(desc, "LPM"), 0), likely=False):
            f.ret(self.call(f, "lpm_update", desc, key, value, flags))
        f.ret(self.call(f, "hash_update", desc, key, value, flags, copy))

    def _delete(self):
        f = self.new("bpfmap_delete", 2, internal=False)
        desc, key = f.args
        f.ret_if(f.ne(f.f(desc, "KIND"), L.KIND_HASH), -L.EINVAL)
        with f.if_(f.ne(f.f(desc, "LPM"), 0), likely=False):
            f.ret(self.call(f, "lpm_delete", desc, key))
        h = self.call(f, "hash_key", key, f.f(desc, "KEY_SIZE"))
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        e = self.call(f, "hash_find", desc, key, h)
        with f.if_(f.sge(e, 0)):
            self.call(f, "hash_unlink", desc, e)
        self.call(f, "unlock", lock)
        f.ret(f.sel(f.slt(e, 0), -L.ENOENT, 0))

    def _get_next_key(self):
        f = self.new("bpfmap_get_next_key", 3, internal=False)
        desc, key, out = f.args
        kind = f.f(desc, "KIND")
        with f.if_(f.eq(kind, L.KIND_ARRAY)):
            idx = f.var(0xFFFFFFFF)
            with f.if_(f.ne(key, 0)):
                f.put(idx, f.ld(key, I32, align=1))
            mx = f.f(desc, "MAX_ENTRIES")
            with f.if_(f.uge(f.get(idx), mx)):
                f.st(out, c64(0), I32, align=1)
                f.ret(0)
            f.ret_if(f.eq(f.get(idx), f.b.sub(mx, c64(1))), -L.ENOENT)
            f.st(out, f.add(f.get(idx), 1), I32, align=1)
            f.ret(0)
        f.ret_if(f.ne(kind, L.KIND_HASH), -L.EINVAL)
        f.ret(self.call(f, "hash_next", desc, key, out))

    def _clear(self):
        f = self.new("bpfmap_clear", 1, internal=False)
        desc = f.args[0]
        kind = f.f(desc, "KIND")
        with f.if_(f.eq(kind, L.KIND_ARRAY)):
            f.memset(f.f(desc, "DATA"), 0, f.f(desc, "DATA_SIZE"))
            f.ret(0)
        with f.if_(f.eq(kind, L.KIND_QUEUE)):
            lock = f.field_addr(desc, "LOCK")
            self.call(f, "lock", lock)
            f.set_f(desc, "HEAD", 0)
            f.set_f(desc, "TAIL", 0)
            self.call(f, "unlock", lock)
            f.ret(0)
        f.ret_if(f.ne(kind, L.KIND_HASH), -L.EINVAL)
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        cap = f.f(desc, "CAPACITY")
        f.memset(f.f(desc, "BUCKETS"), 0xFF, f.mul(f.f(desc, "NBUCKETS"), 8))
        f.memset(f.f(desc, "HASHES"), 0, f.mul(cap, 8))
        fnext = f.f(desc, "FNEXT")
        i = f.var(0)
        with f.while_(lambda: f.ult(f.get(i), cap)):
            n = f.add(f.get(i), 1)
            f.st(f.elem(fnext, f.get(i)), f.sel(f.eq(n, cap), -1, n))
            f.put(i, n)
        f.set_f(desc, "FREE", f.sel(f.eq(cap, 0), -1, 0))
        f.set_f(desc, "COUNT", 0)
        f.set_f(desc, "LRU_HEAD", -1)
        f.set_f(desc, "LRU_TAIL", -1)
        self.lpm_clear(f, desc)
        self.call(f, "unlock", lock)
        f.ret(0)

def build_module(arena_start: int, arena_end: int, ring_table: int, tls_key: int) -> ir.Module:
    return _Module(arena_start, arena_end, ring_table, tls_key).m

