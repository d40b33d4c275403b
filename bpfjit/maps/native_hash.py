"""Hash-map building blocks of the runtime module: key hashing and comparison, the lock-free bounded chain
walk, unlink and insert under the descriptor lock, the LRU recency list, and the kernel's get_next_key
order. A mixin of native._Module (which provides new/call/vaddr); the exported operations and the
concurrency rules are described in native.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llvmlite import ir

from . import layout as L
from .irutil import I64, Fn, c64

K1, K2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9     # multiply-xorshift mixing constants


class HashOps:
    if TYPE_CHECKING:       # a mixin: every other attribute is the native._Module (new, call, vaddr ...)'s
        def __getattr__(self, name: str) -> Any: ...
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
