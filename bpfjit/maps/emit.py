"""JIT side of the map helpers: IR emitters registered in jit.native_helpers.NATIVE (see `register`).

Each emitter fills a helper function `i64 (i64* state, i64 r1..r5)` that the lowering inlines into the
program: it checks the map pointer (arena rule of arena.py, against the symbol `bpfmap_arena_bounds`), in
checked mode that the map is one the running program was loaded with (the kernel's used_maps: the bitmap
at state slot USED_MAPS, one bit per arena slot), its type, in checked mode the pointer arguments
(jit.irlib.region_check_fn, the run's region table), then
calls the runtime module's function (lib.py binds the symbols). Array lookups are inlined (bounds check
+ base + index * stride); an outer map's (map-in-map) lookup returns the inner map pointer stored in its
slot, and programs may not update or delete its elements. tail_call reads the prog_array's table of
`bpf_tail_entry` addresses and leaves a pending tail call in the state for the trampoline of bpf_entry, and
installs the target's used-maps bitmap (the prog_array's table holds [entry addresses | bitmap addresses],
see progarray.py).

The checks and their order match the Python implementations in helpers/map_helpers.py exactly.
"""
from __future__ import annotations

from llvmlite import ir

from ..jit import state as S
from ..jit.irlib import region_check_fn
from ..memory import PERM_R, PERM_W
from . import layout as L
from .irutil import I32, I64, Fn, c64, declare
from .lib import ARENA_SYMBOL, lib
from .native import EXPORTS

T_ARRAY, T_PROG, T_RINGBUF, T_PERF = (L.MAP_TYPES[t] for t in ("array", "prog_array", "ringbuf",
                                                              "perf_event_array"))
T_AOM, T_HOM = L.MAP_TYPES["array_of_maps"], L.MAP_TYPES["hash_of_maps"]


def runtime_fn(module: ir.Module, name: str) -> ir.Function:
    lib()    # compiled and its symbols published before any program links against them
    return declare(module, name, I64, [I64] * EXPORTS[name])


def _arena_bounds(module: ir.Module):
    lib()    # publishes the symbol
    g = module.globals.get(ARENA_SYMBOL)
    if g is None:
        g = ir.GlobalVariable(module, ir.ArrayType(I64, 2), ARENA_SYMBOL)
        g.linkage = "external"
    return g


class HelperFn(Fn):
    """A helper body: args `.stp` (the state block, i64*), `.r[1..5]`; `.state` is its address as i64."""

    def __init__(self, module, fn, checked: bool):
        super().__init__(module, fn.name, fn=fn)
        self.checked = checked
        self.stp = fn.args[0]
        self.r = (None,) + tuple(fn.args[1:])
        self.state = self.b.ptrtoint(self.stp, I64)

    def guard_map(self, desc, bad: int, *, kinds=None, map_type=None) -> None:
        """Return `bad` unless desc is a live descriptor (of one of `kinds` / of `map_type`)."""
        g = _arena_bounds(self.module)
        zero = ir.Constant(I32, 0)
        lo = self.b.load(self.b.gep(g, [zero, zero]))
        hi = self.b.load(self.b.gep(g, [zero, ir.Constant(I32, 1)]))
        off = self.b.sub(desc, lo)
        inside = self.b.and_(self.ult(off, self.b.sub(hi, lo)),
                             self.eq(self.b.and_(off, c64(L.DESC_BYTES - 1)), 0))
        self.ret_if(self.b.not_(inside), bad)
        self.ret_if(self.ne(self.f(desc, "MAGIC"), L.MAGIC), bad)
        if self.checked:     # used_maps: bit (slot % 64) of word (slot / 64) of the program's bitmap
            slot = self.b.lshr(off, c64(L.DESC_BYTES.bit_length() - 1))
            word = self.ld(self.elem(self.ld(self.slot(S.USED_MAPS)), self.b.lshr(slot, c64(6))))
            bit = self.b.and_(self.b.lshr(word, self.b.and_(slot, c64(63))), c64(1))
            self.ret_if(self.eq(bit, 0), bad)
        if kinds is not None:   # kinds are consecutive codes
            k = self.b.sub(self.f(desc, "KIND"), c64(min(kinds)))
            self.ret_if(self.uge(k, len(kinds)), bad)
        if map_type is not None:
            self.ret_if(self.ne(self.f(desc, "TYPE"), map_type), bad)

    def guard_ptr(self, addr, size, bad: int, perm: int = PERM_R) -> None:
        """Checked mode: return `bad` unless [addr, addr+size) has `perm` (size 0 always passes)."""
        if not self.checked:
            return
        end = self.add(addr, size)
        table = self.ld(self.slot(S.TABLE))
        fast = self.b.icmp_unsigned(">=", end, addr)
        inside = None
        for row in (0, 1):            # the run's mem and stack, inline (as the lowering does)
            lo, hi, pm = (self.ld(self.add(table, 8 * (3 * row + k))) for k in range(3))
            ok = self.b.and_(self.b.and_(self.uge(addr, lo), self.b.icmp_unsigned("<=", end, hi)),
                             self.eq(self.b.and_(pm, c64(perm)), perm))
            inside = ok if inside is None else self.b.or_(inside, ok)
        fast = self.b.or_(self.b.and_(fast, inside), self.eq(size, 0))
        with self.if_(self.b.not_(fast), likely=False):
            ok = self.b.call(region_check_fn(self.module), [self.stp, addr, size, c64(perm)])
            self.ret_if(self.b.not_(ok), bad)

    def is_outer(self, desc):
        """i1: desc is an array_of_maps / hash_of_maps (consecutive type codes)."""
        return self.ult(self.b.sub(self.f(desc, "TYPE"), c64(T_AOM)), 2)

    def slot(self, idx: int):
        return self.add(self.state, 8 * idx)


def _lookup(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, key = f.r[1], f.r[2]
    f.guard_map(desc, 0, kinds=L.KV_KINDS)
    f.guard_ptr(key, f.f(desc, "KEY_SIZE"), 0)
    with f.if_(f.eq(f.f(desc, "TYPE"), T_ARRAY), likely=True):   # inline fast path
        idx = f.ld(key, I32, align=1)
        f.ret_if(f.uge(idx, f.f(desc, "MAX_ENTRIES")), 0)
        f.ret(f.add(f.f(desc, "DATA"), f.mul(idx, f.f(desc, "STRIDE"))))
    addr = f.call(runtime_fn(module, "bpfmap_lookup"), desc, key, L.CPU_CURRENT, 0)
    with f.if_(f.is_outer(desc), likely=False):     # map-in-map: the inner map pointer itself (0: none)
        f.ret_if(f.eq(addr, 0), 0)
        f.ret(f.ld(addr))
    f.ret(addr)


def _update(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, key, value, flags = f.r[1:5]
    f.guard_map(desc, -L.EINVAL, kinds=L.KV_KINDS)
    f.ret_if(f.is_outer(desc), -L.EINVAL)
    f.guard_ptr(key, f.f(desc, "KEY_SIZE"), -L.EFAULT)
    f.guard_ptr(value, f.f(desc, "VALUE_SIZE"), -L.EFAULT)
    f.ret(f.call(runtime_fn(module, "bpfmap_update"), desc, key, value, flags, L.CPU_CURRENT))


def _delete(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, key = f.r[1], f.r[2]
    f.guard_map(desc, -L.EINVAL, kinds=L.KV_KINDS)
    f.ret_if(f.is_outer(desc), -L.EINVAL)
    f.guard_ptr(key, f.f(desc, "KEY_SIZE"), -L.EFAULT)
    f.ret(f.call(runtime_fn(module, "bpfmap_delete"), desc, key))


def _tail_call(module, fn, checked):
    f = HelperFn(module, fn, checked)
    ctx, desc, index = f.r[1:4]
    f.guard_map(desc, -L.EINVAL, map_type=T_PROG)
    idx = f.b.and_(index, c64(0xFFFFFFFF))
    f.ret_if(f.uge(idx, f.f(desc, "MAX_ENTRIES")), -L.ENOENT)
    taken = f.ld(f.slot(S.TAIL))
    f.ret_if(f.uge(taken, f.ld(f.slot(S.TAIL_LIMIT))), -L.E2BIG)
    table = f.f(desc, "DATA")
    target = f.ld_acq(f.elem(table, idx))
    f.ret_if(f.eq(target, 0), -L.ENOENT)
    # the target's used-maps bitmap: second half of the table (written before the entry, read after it)
    f.st(f.slot(S.USED_MAPS), f.ld(f.elem(table, f.add(idx, f.f(desc, "MAX_ENTRIES")))))
    f.st(f.slot(S.TAIL), f.add(taken, 1))
    f.st(f.slot(S.TAIL_TARGET), target)
    f.st(f.slot(S.TAIL_CTX), ctx)
    f.st(f.slot(S.F_KIND), c64(S.TAILCALL))
    f.ret(0)


def _perf_event_output(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, flags, data, size = f.r[2:6]
    f.guard_map(desc, -L.EINVAL, map_type=T_PERF)
    f.guard_ptr(data, size, -L.EFAULT)
    f.ret(f.call(runtime_fn(module, "bpfmap_perf_output"), desc, flags, data, size))


def _ringbuf_output(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, data, size, flags = f.r[1:5]
    f.guard_map(desc, -L.EINVAL, map_type=T_RINGBUF)
    f.guard_ptr(data, size, -L.EFAULT)
    f.ret(f.call(runtime_fn(module, "bpfmap_rb_output"), desc, data, size, flags))


def _ringbuf_reserve(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, size, flags = f.r[1:4]
    f.guard_map(desc, 0, map_type=T_RINGBUF)
    f.ret(f.call(runtime_fn(module, "bpfmap_rb_reserve"), desc, size, flags))


def _ringbuf_commit(discard: int):
    def emit(module, fn, checked):
        f = HelperFn(module, fn, checked)
        f.call(runtime_fn(module, "bpfmap_rb_commit"), f.r[1], f.r[2], discard)
        f.ret(0)
    return emit


def _ringbuf_query(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, flags = f.r[1], f.r[2]
    f.guard_map(desc, 0, map_type=T_RINGBUF)
    f.ret(f.call(runtime_fn(module, "bpfmap_rb_query"), desc, flags))


def _push(module, fn, checked):
    f = HelperFn(module, fn, checked)
    desc, value, flags = f.r[1:4]
    f.guard_map(desc, -L.EINVAL, kinds=(L.KIND_QUEUE,))
    f.guard_ptr(value, f.f(desc, "VALUE_SIZE"), -L.EFAULT)
    f.ret(f.call(runtime_fn(module, "bpfmap_push"), desc, value, flags))


def _pop(peek: int):
    def emit(module, fn, checked):
        f = HelperFn(module, fn, checked)
        desc, out = f.r[1], f.r[2]
        f.guard_map(desc, -L.EINVAL, kinds=(L.KIND_QUEUE,))
        f.guard_ptr(out, f.f(desc, "VALUE_SIZE"), -L.EFAULT, PERM_W)
        f.ret(f.call(runtime_fn(module, "bpfmap_pop"), desc, out, peek))
    return emit


# native helper name -> (emitter, may_fault)
EMITTERS = {
    "map_lookup_elem": (_lookup, False),
    "map_update_elem": (_update, False),
    "map_delete_elem": (_delete, False),
    "tail_call": (_tail_call, True),
    "perf_event_output": (_perf_event_output, False),
    "ringbuf_output": (_ringbuf_output, False),
    "ringbuf_reserve": (_ringbuf_reserve, False),
    "ringbuf_submit": (_ringbuf_commit(0), False),
    "ringbuf_discard": (_ringbuf_commit(1), False),
    "ringbuf_query": (_ringbuf_query, False),
    "map_push_elem": (_push, False),
    "map_pop_elem": (_pop(0), False),
    "map_peek_elem": (_pop(1), False),
}


def register(native) -> None:
    """Add the emitters to a NativeHelpers registry (idempotent)."""
    for name, (emitter, may_fault) in EMITTERS.items():
        native.add(name, emitter, may_fault)
