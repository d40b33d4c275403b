"""LPM-trie building blocks of the runtime module (a mixin of native._Module, like native_hash.py).

An LPM trie is a hash map (KIND_HASH, descriptor field LPM = 1) whose entries are keyed by the *masked*
key: `{u32 prefixlen; data}` with every data bit after prefixlen cleared, so an update or delete finds
its exact prefix with one hash probe. Beside the hash storage the map keeps, per prefix length, the
number of entries (LPM_COUNTS, i64[max_prefixlen + 1]) and a bitmap of the lengths in use (LPM_BITMAP),
and the key each entry was last written with (LPM_ORIG, for get_next_key, as the kernel keeps the data
given). A lookup walks the lengths in use from min(key prefixlen, max) downwards (highest set bit first)
and probes the hash with the key masked to each: the first hit is the longest matching prefix. Cost:
one hash probe per distinct prefix length in the map that is not longer than the key.

    lpm_lookup(desc, key)                 value address or 0
    lpm_update(desc, key, value, flags)   0 or -errno (EINVAL, EEXIST, ENOENT, ENOSPC as the kernel)
    lpm_delete(desc, key)                 0 or -errno (EINVAL, ENOENT)

Updates and deletes take the descriptor lock; lookups are lock-free as for hash maps. get_next_key (the
kernel's post-order) is computed by the Python class (maps/lpm.py): programs cannot call it.
"""
from __future__ import annotations

from llvmlite import ir

from . import layout as L
from .irutil import I1, I8, I32, I64, Fn, c64

KEY_BUF = 264                     # bytes of the masked-key buffer (key_size <= 260)


class LpmOps:
    def _key_buf(self, f: Fn):
        with f.b.goto_block(f.entry):
            if f.entry.instructions:
                f.b.position_before(f.entry.instructions[0])
            a = f.b.alloca(ir.ArrayType(I8, KEY_BUF))
            a.align = 8
        return f.b.ptrtoint(a, I64)

    def _lpm_truncate(self):
        """lpm_truncate(desc, buf, plen): set buf's prefixlen to plen and clear its data bits from plen on."""
        f = self.new("lpm_truncate", 3)
        desc, buf, plen = f.args
        f.st(buf, plen, I32, align=1)
        dsize = f.b.sub(f.f(desc, "KEY_SIZE"), c64(4))
        bi = f.var(f.b.lshr(plen, c64(3)))
        rem = f.b.and_(plen, c64(7))
        with f.if_(f.ne(rem, 0)):
            p = f.add(buf, 4, f.get(bi))
            keep = f.b.and_(f.b.lshr(c64(0xFF00), rem), c64(0xFF))
            f.st(p, f.b.and_(f.ld(p, I8), keep), I8)
            f.put(bi, f.add(f.get(bi), 1))
        with f.if_(f.ult(f.get(bi), dsize)):
            f.memset(f.add(buf, 4, f.get(bi)), 0, f.b.sub(dsize, f.get(bi)))
        f.ret(0)

    def _truncate_down(self, f: Fn, buf, ln, zeroed):
        """lpm_truncate for a lookup's descending lengths: clears only the bytes not cleared yet."""
        f.st(buf, ln, I32, align=1)
        bi = f.b.lshr(ln, c64(3))
        rem = f.b.and_(ln, c64(7))
        keep_to = f.add(bi, f.b.zext(f.ne(rem, 0), I64))
        j = f.var(keep_to)
        with f.while_(lambda: f.ult(f.get(j), f.get(zeroed))):
            f.st(f.add(buf, 4, f.get(j)), c64(0), I8)
            f.put(j, f.add(f.get(j), 1))
        f.put(zeroed, keep_to)
        with f.if_(f.ne(rem, 0)):
            p = f.add(buf, 4, bi)
            keep = f.b.and_(f.b.lshr(c64(0xFF00), rem), c64(0xFF))
            f.st(p, f.b.and_(f.ld(p, I8), keep), I8)

    def _lpm_lookup(self):
        f = self.new("lpm_lookup", 2)
        desc, key = f.args
        plen = f.ld(key, I32, align=1)
        f.ret_if(f.ugt(plen, f.f(desc, "LPM_MAXLEN")), 0)
        ks = f.f(desc, "KEY_SIZE")
        buf = self._key_buf(f)
        f.memcpy(buf, key, ks)
        bitmap = f.f(desc, "LPM_BITMAP")
        length = f.var(plen)
        zeroed = f.var(f.b.sub(ks, c64(4)))          # data bytes from here on are already zero
        with f.while_(lambda: ir.Constant(I1, 1)):
            cur = f.get(length)
            w = f.var(f.b.lshr(cur, c64(6)))
            upto = f.b.lshr(c64(-1), f.b.sub(c64(63), f.b.and_(cur, c64(63))))     # bits 0..cur%64
            bits = f.var(f.b.and_(f.ld(f.elem(bitmap, f.get(w))), upto))
            with f.while_(lambda: f.eq(f.get(bits), 0)):
                f.ret_if(f.eq(f.get(w), 0), 0)
                f.put(w, f.b.sub(f.get(w), c64(1)))
                f.put(bits, f.ld(f.elem(bitmap, f.get(w))))
            top = f.b.sub(c64(63), f.b.ctlz(f.get(bits), ir.Constant(I1, 1)))
            ln = f.add(f.b.shl(f.get(w), c64(6)), top)
            self._truncate_down(f, buf, ln, zeroed)
            e = self.call(f, "hash_find", desc, buf, self.call(f, "hash_key", buf, ks))
            f.ret_if(f.sge(e, 0), self.vaddr(f, desc, e, c64(0)))
            f.ret_if(f.eq(ln, 0), 0)
            f.put(length, f.b.sub(ln, c64(1)))
        f.ret(0)

    def _lpm_count(self, f: Fn, desc, plen, delta: int):
        """counts[plen] += delta and keep the bitmap bit in step (lock held)."""
        cnt = f.elem(f.f(desc, "LPM_COUNTS"), plen)
        n = f.add(f.ld(cnt), delta)
        f.st(cnt, n)
        word = f.elem(f.f(desc, "LPM_BITMAP"), f.b.lshr(plen, c64(6)))
        bit = f.b.shl(c64(1), f.b.and_(plen, c64(63)))
        old = f.ld(word)
        f.st_rel(word, f.sel(f.eq(n, 0), f.b.and_(old, f.b.not_(bit)), f.b.or_(old, bit)))

    def _lpm_update(self):
        f = self.new("lpm_update", 4)
        desc, key, value, flags = f.args
        f.ret_if(f.ugt(flags, L.BPF_EXIST), -L.EINVAL)
        plen = f.ld(key, I32, align=1)
        f.ret_if(f.ugt(plen, f.f(desc, "LPM_MAXLEN")), -L.EINVAL)
        ks, kstride = f.f(desc, "KEY_SIZE"), f.f(desc, "KEY_STRIDE")
        buf = self._key_buf(f)
        f.memcpy(buf, key, ks)
        self.call(f, "lpm_truncate", desc, buf, plen)
        h = self.call(f, "hash_key", buf, ks)
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        rc = f.var(0)
        e = self.call(f, "hash_find", desc, buf, h)
        with f.if_else(f.sge(e, 0)) as (found, missing):
            with found:
                with f.if_else(f.eq(flags, L.BPF_NOEXIST)) as (exists, replace):
                    with exists:
                        f.put(rc, c64(-L.EEXIST))
                    with replace:
                        self.call(f, "copy_value", desc, self.vaddr(f, desc, e, c64(0)), value, 0, 0)
                        f.memcpy(f.add(f.f(desc, "LPM_ORIG"), f.mul(e, kstride)), key, ks)
            with missing:
                with f.if_else(f.eq(flags, L.BPF_EXIST)) as (must_exist, insert):
                    with must_exist:
                        f.put(rc, c64(-L.ENOENT))
                    with insert:
                        with f.if_else(f.uge(f.f(desc, "COUNT"), f.f(desc, "MAX_ENTRIES"))) as (full, room):
                            with full:
                                f.put(rc, c64(-L.ENOSPC))
                            with room:
                                slot = f.f(desc, "FREE")
                                self._insert(f, desc, buf, value, c64(0), h, rc, ir.Constant(I1, 0))
                                with f.if_(f.eq(f.get(rc), 0)):
                                    f.memcpy(f.add(f.f(desc, "LPM_ORIG"), f.mul(slot, kstride)), key, ks)
                                    self._lpm_count(f, desc, plen, 1)
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))

    def _lpm_delete(self):
        f = self.new("lpm_delete", 2)
        desc, key = f.args
        plen = f.ld(key, I32, align=1)
        f.ret_if(f.ugt(plen, f.f(desc, "LPM_MAXLEN")), -L.EINVAL)
        ks = f.f(desc, "KEY_SIZE")
        buf = self._key_buf(f)
        f.memcpy(buf, key, ks)
        self.call(f, "lpm_truncate", desc, buf, plen)
        h = self.call(f, "hash_key", buf, ks)
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        e = self.call(f, "hash_find", desc, buf, h)
        with f.if_(f.sge(e, 0)):
            self.call(f, "hash_unlink", desc, e)
            self._lpm_count(f, desc, plen, -1)
        self.call(f, "unlock", lock)
        f.ret(f.sel(f.slt(e, 0), -L.ENOENT, 0))

    def lpm_clear(self, f: Fn, desc):
        """Inline in bpfmap_clear (lock held): no prefix lengths in use."""
        with f.if_(f.ne(f.f(desc, "LPM"), 0)):
            n = f.add(f.f(desc, "LPM_MAXLEN"), 1)
            f.memset(f.f(desc, "LPM_COUNTS"), 0, f.mul(n, 8))
            f.memset(f.f(desc, "LPM_BITMAP"), 0, f.mul(f.b.lshr(f.add(n, 63), c64(6)), 8))
