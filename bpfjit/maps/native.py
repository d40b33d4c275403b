"""The map operations, written once in LLVM IR: the runtime module both engines call.

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

`cpu` selects a per-cpu value copy: an index, layout.CPU_CURRENT (the thread's cpu, copy 0 for other
maps) or, for update, layout.CPU_ALL (the buffer holds NCPUS values STRIDE bytes apart). The callers
(the Python API in this package, the Python helpers, the JIT helper code of emit.py) validate the
descriptor and the pointers first; these functions trust them, except rb_commit which only gets a record
pointer and validates it against the ring table. Compilation and binding live in lib.py.

Hash maps: lookups take no lock (chains are walked with acquire loads and at most CAPACITY steps, and
every index is bounds-checked, so a racing update can make a lookup miss but never escape the storage);
updates, deletes, get_next_key, clear and LRU lookups take the descriptor's spinlock. Elements are updated
in place and never move, so value pointers stay valid while the map lives.
"""
from __future__ import annotations

from llvmlite import ir

from . import layout as L
from .irutil import I8P, I32, I64, Fn, c64, libc

K1, K2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9
EXPORTS = {   # name -> number of i64 arguments
    "bpfmap_thread_id": 0, "bpfmap_valid": 1, "bpfmap_lookup": 4, "bpfmap_update": 5, "bpfmap_delete": 2,
    "bpfmap_get_next_key": 3, "bpfmap_clear": 1, "bpfmap_rb_reserve": 3, "bpfmap_rb_commit": 3,
    "bpfmap_rb_output": 4, "bpfmap_rb_query": 2, "bpfmap_perf_output": 4,
}


class _Module:
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
                     "hash_next", "ring_reserve", "commit_hdr"):
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

    def _hash_key(self):
        f = self.new("hash_key", 2)
        key, size = f.args
        h = f.var(f.b.xor(c64(K1), size))
        i = f.var(0)

        def mix(w):
            x = f.mul(f.b.xor(f.get(h), w), K1)
            f.put(h, f.b.xor(x, f.b.lshr(x, c64(29))))
        with f.while_(lambda: f.b.icmp_unsigned("<=", f.add(f.get(i), 8), size)):
            mix(f.ld(f.add(key, f.get(i)), I64, align=1))
            f.put(i, f.add(f.get(i), 8))
        w = f.var(0)
        sh = f.var(0)
        for width in (32, 16, 8):        # the last size % 8 bytes, widest first
            with f.if_(f.ne(f.b.and_(size, c64(width // 8)), 0)):
                part = f.ld(f.add(key, f.get(i)), ir.IntType(width), align=1)
                f.put(w, f.b.or_(f.get(w), f.b.shl(part, f.get(sh))))
                f.put(sh, f.add(f.get(sh), width))
                f.put(i, f.add(f.get(i), width // 8))
        with f.if_(f.ne(f.b.and_(size, c64(7)), 0)):
            mix(f.get(w))
        x = f.get(h)
        x = f.b.xor(x, f.b.lshr(x, c64(32)))
        x = f.mul(x, K2)
        x = f.b.xor(x, f.b.lshr(x, c64(29)))
        f.ret(f.b.or_(x, c64(L.HASH_USED)))

    def _key_eq(self):
        f = self.new("key_eq", 3)
        a, bk, size = f.args
        i = f.var(0)
        with f.while_(lambda: f.b.icmp_unsigned("<=", f.add(f.get(i), 8), size)):
            f.ret_if(f.ne(f.ld(f.add(a, f.get(i)), I64, align=1), f.ld(f.add(bk, f.get(i)), I64, align=1)), 0)
            f.put(i, f.add(f.get(i), 8))
        for width in (32, 16, 8):
            with f.if_(f.ne(f.b.and_(size, c64(width // 8)), 0)):
                t = ir.IntType(width)
                f.ret_if(f.ne(f.ld(f.add(a, f.get(i)), t, align=1), f.ld(f.add(bk, f.get(i)), t, align=1)), 0)
                f.put(i, f.add(f.get(i), width // 8))
        f.ret(1)

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

    def _hash_find(self):
        """hash_find(desc, key, h): index of the entry holding key, or -1. Lock-free, bounded."""
        f = self.new("hash_find", 3)
        desc, key, h = f.args
        cap = f.f(desc, "CAPACITY")
        nxt, hashes, keys = f.f(desc, "NEXT"), f.f(desc, "HASHES"), f.f(desc, "KEYS")
        ks, kstride = f.f(desc, "KEY_SIZE"), f.f(desc, "KEY_STRIDE")
        bucket = f.elem(f.f(desc, "BUCKETS"), f.b.and_(h, f.b.sub(f.f(desc, "NBUCKETS"), c64(1))))
        i = f.var(f.ld_acq(bucket))
        steps = f.var(0)
        with f.while_(lambda: f.b.and_(f.ult(f.get(i), cap), f.b.icmp_unsigned("<=", f.get(steps), cap))):
            e = f.get(i)
            with f.if_(f.eq(f.ld(f.elem(hashes, e)), h)):
                same = self.call(f, "key_eq", f.add(keys, f.mul(e, kstride)), key, ks)
                f.ret_if(f.ne(same, 0), e)
            f.put(i, f.ld_acq(f.elem(nxt, e)))
            f.put(steps, f.add(f.get(steps), 1))
        f.ret(-1)

    def _hash_prev(self):
        """hash_prev(desc, e): the entry before e in its chain, or -1 (lock held)."""
        f = self.new("hash_prev", 2)
        desc, e = f.args
        cap, nxt = f.f(desc, "CAPACITY"), f.f(desc, "NEXT")
        mask = f.b.sub(f.f(desc, "NBUCKETS"), c64(1))
        h = f.ld(f.elem(f.f(desc, "HASHES"), e))
        i = f.var(f.ld(f.elem(f.f(desc, "BUCKETS"), f.b.and_(h, mask))))
        prev = f.var(-1)
        steps = f.var(0)
        with f.while_(lambda: f.b.and_(f.b.and_(f.ult(f.get(i), cap), f.ne(f.get(i), e)),
                                       f.b.icmp_unsigned("<=", f.get(steps), cap))):
            f.put(prev, f.get(i))
            f.put(i, f.ld(f.elem(nxt, f.get(i))))
            f.put(steps, f.add(f.get(steps), 1))
        f.ret(f.get(prev))

    def _lru_unlink(self):
        f = self.new("lru_unlink", 2)
        desc, e = f.args
        prev, nxt = f.f(desc, "LRU_PREV"), f.f(desc, "LRU_NEXT")
        p, n = f.ld(f.elem(prev, e)), f.ld(f.elem(nxt, e))
        with f.if_else(f.sge(p, 0)) as (yes, no):
            with yes:
                f.st(f.elem(nxt, p), n)
            with no:
                f.set_f(desc, "LRU_HEAD", n)
        with f.if_else(f.sge(n, 0)) as (yes, no):
            with yes:
                f.st(f.elem(prev, n), p)
            with no:
                f.set_f(desc, "LRU_TAIL", p)
        f.ret(0)

    def _lru_push_front(self):
        f = self.new("lru_push_front", 2)
        desc, e = f.args
        prev, nxt = f.f(desc, "LRU_PREV"), f.f(desc, "LRU_NEXT")
        head = f.f(desc, "LRU_HEAD")
        f.st(f.elem(prev, e), c64(-1))
        f.st(f.elem(nxt, e), head)
        with f.if_else(f.sge(head, 0)) as (yes, no):
            with yes:
                f.st(f.elem(prev, head), e)
            with no:
                f.set_f(desc, "LRU_TAIL", e)
        f.set_f(desc, "LRU_HEAD", e)
        f.ret(0)

    def lru_touch(self, f: Fn, desc, e):
        """Make e the most recently used entry (lock held)."""
        with f.if_(f.ne(f.f(desc, "LRU_HEAD"), e)):
            self.call(f, "lru_unlink", desc, e)
            self.call(f, "lru_push_front", desc, e)

    def _hash_unlink(self):
        """hash_unlink(desc, e): remove entry e from its chain and the recency list; free it (lock held).
        next[e] is kept, so a lookup standing on e walks on."""
        f = self.new("hash_unlink", 2)
        desc, e = f.args
        nxt, hashes = f.f(desc, "NEXT"), f.f(desc, "HASHES")
        h = f.ld(f.elem(hashes, e))
        bucket = f.elem(f.f(desc, "BUCKETS"), f.b.and_(h, f.b.sub(f.f(desc, "NBUCKETS"), c64(1))))
        p = self.call(f, "hash_prev", desc, e)
        n = f.ld(f.elem(nxt, e))
        with f.if_else(f.slt(p, 0)) as (first, later):
            with first:
                f.st_rel(bucket, n)
            with later:
                f.st_rel(f.elem(nxt, p), n)
        f.st_rel(f.elem(hashes, e), c64(0))
        with f.if_(f.ne(f.f(desc, "LRU"), 0)):
            self.call(f, "lru_unlink", desc, e)
        f.st(f.elem(f.f(desc, "FNEXT"), e), f.f(desc, "FREE"))
        f.set_f(desc, "FREE", e)
        f.set_f(desc, "COUNT", f.b.sub(f.f(desc, "COUNT"), c64(1)))
        f.ret(0)

    def _hash_update(self):
        """hash_update(desc, key, value, flags, cpu) under the lock; cpu already resolved."""
        f = self.new("hash_update", 5)
        desc, key, value, flags, cpu = f.args
        h = self.call(f, "hash_key", key, f.f(desc, "KEY_SIZE"))
        lock = f.field_addr(desc, "LOCK")
        lru = f.ne(f.f(desc, "LRU"), 0)
        self.call(f, "lock", lock)
        rc = f.var(0)
        e = self.call(f, "hash_find", desc, key, h)
        with f.if_else(f.sge(e, 0)) as (found, missing):
            with found:
                with f.if_else(f.eq(flags, L.BPF_NOEXIST)) as (exists, replace):
                    with exists:
                        f.put(rc, c64(-L.EEXIST))
                    with replace:
                        self.call(f, "copy_value", desc, self.vaddr(f, desc, e, c64(0)), value, cpu, 0)
                        with f.if_(lru):
                            self.lru_touch(f, desc, e)
            with missing:
                with f.if_else(f.eq(flags, L.BPF_EXIST)) as (must_exist, insert):
                    with must_exist:
                        f.put(rc, c64(-L.ENOENT))
                    with insert:
                        self._insert(f, desc, key, value, cpu, h, rc, lru)
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))

    def _insert(self, f: Fn, desc, key, value, cpu, h, rc, lru):
        with f.if_(f.uge(f.f(desc, "COUNT"), f.f(desc, "MAX_ENTRIES"))):
            tail = f.f(desc, "LRU_TAIL")
            with f.if_else(f.b.and_(lru, f.sge(tail, 0))) as (evict, full):
                with evict:
                    self.call(f, "hash_unlink", desc, tail)
                with full:
                    f.put(rc, c64(-L.E2BIG))
        with f.if_(f.eq(f.get(rc), 0)):
            e = f.f(desc, "FREE")
            with f.if_else(f.slt(e, 0)) as (none, ok):
                with none:
                    f.put(rc, c64(-L.ENOMEM))
                with ok:
                    f.set_f(desc, "FREE", f.ld(f.elem(f.f(desc, "FNEXT"), e)))
                    f.memcpy(f.add(f.f(desc, "KEYS"), f.mul(e, f.f(desc, "KEY_STRIDE"))), key,
                             f.f(desc, "KEY_SIZE"))
                    self.call(f, "copy_value", desc, self.vaddr(f, desc, e, c64(0)), value, cpu, 1)
                    bucket = f.elem(f.f(desc, "BUCKETS"), f.b.and_(h, f.b.sub(f.f(desc, "NBUCKETS"), c64(1))))
                    f.st(f.elem(f.f(desc, "NEXT"), e), f.ld(bucket))
                    f.st_rel(f.elem(f.f(desc, "HASHES"), e), h)
                    f.st_rel(bucket, e)
                    f.set_f(desc, "COUNT", f.add(f.f(desc, "COUNT"), 1))
                    with f.if_(lru):
                        self.call(f, "lru_push_front", desc, e)

    def _hash_next(self):
        """hash_next(desc, key, next): the kernel's order (rest of key's chain, then the following buckets;
        a missing or null key restarts at the first element)."""
        f = self.new("hash_next", 3)
        desc, key, out = f.args
        cap, nb = f.f(desc, "CAPACITY"), f.f(desc, "NBUCKETS")
        keys, kstride, ks = f.f(desc, "KEYS"), f.f(desc, "KEY_STRIDE"), f.f(desc, "KEY_SIZE")
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        rc = f.var(c64(-L.ENOENT))
        start = f.var(0)
        with f.if_(f.ne(key, 0)):
            h = self.call(f, "hash_key", key, ks)
            e = self.call(f, "hash_find", desc, key, h)
            with f.if_(f.sge(e, 0)):
                n = f.ld(f.elem(f.f(desc, "NEXT"), e))
                with f.if_(f.ult(n, cap)):
                    f.memcpy(out, f.add(keys, f.mul(n, kstride)), ks)
                    f.put(rc, c64(0))
                f.put(start, f.add(f.b.and_(h, f.b.sub(nb, c64(1))), 1))
        bi = f.var(f.get(start))
        with f.while_(lambda: f.b.and_(f.ne(f.get(rc), 0), f.ult(f.get(bi), nb))) as done:
            head = f.ld(f.elem(f.f(desc, "BUCKETS"), f.get(bi)))
            with f.if_(f.ult(head, cap)):
                f.memcpy(out, f.add(keys, f.mul(head, kstride)), ks)
                f.put(rc, c64(0))
                f.brk(done)
            f.put(bi, f.add(f.get(bi), 1))
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))

    def _ring_reserve(self):
        """ring_reserve(ctl, data, rsize, len): offset of a new busy record of len bytes, or -1."""
        f = self.new("ring_reserve", 4)
        ctl, data, rsize, ln = f.args
        f.ret_if(f.ugt(ln, f.b.sub(rsize, c64(L.RB_HDR))), -1)
        total = f.b.and_(f.add(ln, L.RB_HDR + 7), c64(~7))
        lock = f.add(ctl, 8 * L.CTL_LOCK)
        self.call(f, "lock", lock)
        cons = f.ld_acq(f.add(ctl, 8 * L.CTL_CONS))
        prod = f.ld(f.add(ctl, 8 * L.CTL_PROD))
        mask = f.b.sub(rsize, c64(1))
        off = f.b.and_(prod, mask)
        pad = f.sel(f.ugt(f.add(off, total), rsize), f.b.sub(rsize, off), 0)
        new = f.add(prod, pad, total)
        rc = f.var(-1)
        with f.if_(f.b.icmp_unsigned("<=", f.b.sub(new, cons), rsize)):
            with f.if_(f.ne(pad, 0)):
                f.st(f.add(data, off), f.b.or_(f.b.sub(pad, c64(L.RB_HDR)), c64(L.RB_DISCARD)), I32)
                f.st(f.add(data, off, 4), f.b.lshr(off, c64(3)), I32)
            rec = f.b.and_(f.add(prod, pad), mask)
            f.st(f.add(data, rec), f.b.or_(ln, c64(L.RB_BUSY)), I32)
            f.st(f.add(data, rec, 4), f.b.lshr(rec, c64(3)), I32)
            f.st_rel(f.add(ctl, 8 * L.CTL_PROD), new)
            f.put(rc, rec)
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))

    def _commit_hdr(self):
        f = self.new("commit_hdr", 2)
        hdr, discard = f.args
        h = f.ld_acq(hdr, I32)
        f.ret_if(f.eq(f.b.and_(h, c64(L.RB_BUSY)), 0), 0)
        new = f.b.or_(f.b.and_(h, c64(L.RB_BUSY - 1)), f.sel(f.ne(discard, 0), L.RB_DISCARD, 0))
        f.st_rel(hdr, new, I32)
        f.ret(0)

    def ring_write(self, f: Fn, ctl, data, rsize, src, ln, fail: int):
        """reserve + copy + commit; on a full ring count a lost record and return -fail."""
        off = self.call(f, "ring_reserve", ctl, data, rsize, ln)
        with f.if_(f.slt(off, 0), likely=False):
            f.b.atomic_rmw("add", f.ptr(f.add(ctl, 8 * L.CTL_LOST)), c64(1), "monotonic")
            f.ret(-fail)
        f.memcpy(f.add(data, off, L.RB_HDR), src, ln)
        self.call(f, "commit_hdr", f.add(data, off), 0)
        f.ret(0)

    # ---- exported operations ----
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
        f.ret(self.call(f, "hash_update", desc, key, value, flags, copy))

    def _delete(self):
        f = self.new("bpfmap_delete", 2, internal=False)
        desc, key = f.args
        f.ret_if(f.ne(f.f(desc, "KIND"), L.KIND_HASH), -L.EINVAL)
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
        self.call(f, "unlock", lock)
        f.ret(0)

    def _rb_reserve(self):
        f = self.new("bpfmap_rb_reserve", 3, internal=False)
        desc, ln, flags = f.args
        f.ret_if(f.ne(flags, 0), 0)
        data = f.f(desc, "DATA")
        off = self.call(f, "ring_reserve", f.field_addr(desc, "RING_CTL"), data, f.f(desc, "DATA_SIZE"), ln)
        f.ret_if(f.slt(off, 0), 0)
        f.ret(f.add(data, off, L.RB_HDR))

    def _rb_commit(self):
        f = self.new("bpfmap_rb_commit", 3, internal=False)
        ptr, _flags, discard = f.args
        hdr = f.b.sub(ptr, c64(L.RB_HDR))
        table = self.ring_table
        n = f.ld(c64(table))
        r = f.var(0)
        with f.while_(lambda: f.ult(f.get(r), n)):
            row = f.add(c64(table + 8), f.mul(f.get(r), 24))
            end = f.ld_acq(f.add(row, 8))
            lo = f.ld(row)
            ok = f.b.and_(f.b.and_(f.ne(end, 0), f.uge(hdr, lo)), f.ult(hdr, end))
            ok = f.b.and_(ok, f.eq(f.b.and_(f.b.sub(hdr, lo), c64(7)), 0))
            with f.if_(ok):
                self.call(f, "commit_hdr", hdr, discard)
                f.ret(0)
            f.put(r, f.add(f.get(r), 1))
        f.ret(0)

    def _rb_output(self):
        f = self.new("bpfmap_rb_output", 4, internal=False)
        desc, src, ln, flags = f.args
        f.ret_if(f.ne(f.b.and_(flags, c64(~L.RB_WAKEUP_FLAGS)), 0), -L.EINVAL)
        self.ring_write(f, f.field_addr(desc, "RING_CTL"), f.f(desc, "DATA"), f.f(desc, "DATA_SIZE"), src, ln,
                        L.EAGAIN)

    def _rb_query(self):
        f = self.new("bpfmap_rb_query", 2, internal=False)
        desc, flags = f.args
        ctl = f.field_addr(desc, "RING_CTL")
        prod = f.ld_acq(f.add(ctl, 8 * L.CTL_PROD))
        cons = f.ld_acq(f.add(ctl, 8 * L.CTL_CONS))
        q = L.RB_QUERY
        values = {q["avail_data"]: f.b.sub(prod, cons), q["ring_size"]: f.f(desc, "DATA_SIZE"),
                  q["cons_pos"]: cons, q["prod_pos"]: prod}
        for code, v in values.items():
            f.ret_if(f.eq(flags, code), v)
        f.ret(0)

    def _perf_output(self):
        f = self.new("bpfmap_perf_output", 4, internal=False)
        desc, flags, src, ln = f.args
        f.ret_if(f.ne(f.b.lshr(flags, c64(32)), 0), -L.EINVAL)
        idx = f.b.and_(flags, c64(L.F_INDEX_MASK))
        idx = f.sel(f.eq(idx, L.F_CURRENT_CPU), self.call(f, "cpu_index", desc, c64(L.CPU_CURRENT)), idx)
        f.ret_if(f.uge(idx, f.f(desc, "MAX_ENTRIES")), -L.E2BIG)
        size = f.f(desc, "PERF_BUF")
        ctl = f.add(f.f(desc, "PERF_CTL"), f.mul(idx, L.CTL_BYTES))
        self.ring_write(f, ctl, f.add(f.f(desc, "DATA"), f.mul(idx, size)), size, src, ln, L.ENOSPC)


def build_module(arena_start: int, arena_end: int, ring_table: int, tls_key: int) -> ir.Module:
    return _Module(arena_start, arena_end, ring_table, tls_key).m

