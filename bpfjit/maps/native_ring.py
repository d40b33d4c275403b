"""Ring buffer, perf event array and queue/stack operations of the runtime module. Ring records follow
layout.py (8-byte header, never wrapping); a producer reserves under the ring's lock and publishes its
position with a release store, the Python consumer (ring.py) reads up to it. Mixins of native._Module
(which provides new/call); the exported functions are listed in native.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import layout as L
from .irutil import I32, Fn, c64


class RingOps:
    if TYPE_CHECKING:       # a mixin: every other attribute is the native._Module (new, call ...)'s
        def __getattr__(self, name: str) -> Any: ...
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


class QueueStackOps:
    """bpfmap_push / bpfmap_pop of queue and stack maps (the kernel's queue_stack_maps semantics)."""

    @staticmethod
    def next_slot(f: Fn, i, slots):
        n = f.add(i, 1)
        return f.sel(f.eq(n, slots), 0, n)

    def _push(self):
        f = self.new("bpfmap_push", 3, internal=False)
        desc, value, flags = f.args
        f.ret_if(f.b.and_(f.ne(flags, L.BPF_ANY), f.ne(flags, L.BPF_EXIST)), -L.EINVAL)
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        slots, head = f.f(desc, "SLOTS"), f.f(desc, "HEAD")
        nxt = self.next_slot(f, head, slots)
        rc = f.var(0)
        with f.if_(f.eq(nxt, f.f(desc, "TAIL"))):          # full: replace the oldest, or refuse
            with f.if_else(f.eq(flags, L.BPF_EXIST)) as (replace, refuse):
                with replace:
                    f.set_f(desc, "TAIL", self.next_slot(f, f.f(desc, "TAIL"), slots))
                with refuse:
                    f.put(rc, c64(-L.E2BIG))
        with f.if_(f.eq(f.get(rc), 0)):
            f.memcpy(f.add(f.f(desc, "DATA"), f.mul(head, f.f(desc, "STRIDE"))), value, f.f(desc, "VALUE_SIZE"))
            f.set_f(desc, "HEAD", nxt)
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))

    def _pop(self):
        f = self.new("bpfmap_pop", 3, internal=False)
        desc, out, peek = f.args
        lock = f.field_addr(desc, "LOCK")
        self.call(f, "lock", lock)
        slots, head, tail = f.f(desc, "SLOTS"), f.f(desc, "HEAD"), f.f(desc, "TAIL")
        data, stride, vs = f.f(desc, "DATA"), f.f(desc, "STRIDE"), f.f(desc, "VALUE_SIZE")
        rc = f.var(c64(-L.ENOENT))
        keep = f.ne(peek, 0)
        with f.if_(f.ne(head, tail)):
            with f.if_else(f.eq(f.f(desc, "TYPE"), L.MAP_TYPES["stack"])) as (stack, queue):
                with stack:                        # newest first
                    top = f.sel(f.eq(head, 0), f.b.sub(slots, c64(1)), f.b.sub(head, c64(1)))
                    f.memcpy(out, f.add(data, f.mul(top, stride)), vs)
                    f.set_f(desc, "HEAD", f.sel(keep, head, top))
                with queue:                        # oldest first
                    f.memcpy(out, f.add(data, f.mul(tail, stride)), vs)
                    f.set_f(desc, "TAIL", f.sel(keep, tail, self.next_slot(f, tail, slots)))
            f.put(rc, c64(0))
        self.call(f, "unlock", lock)
        f.ret(f.get(rc))
