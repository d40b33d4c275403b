"""The map helpers (kernel ids and prototypes): map_lookup_elem 1, map_update_elem 2, map_delete_elem 3,
tail_call 12, perf_event_output 25, map_push_elem 87, map_pop_elem 88, map_peek_elem 89, ringbuf_output
130, ringbuf_reserve 131, ringbuf_submit 132, ringbuf_discard 133, ringbuf_query 134.

Python implementations (the interpreter's) check the map pointer (a live descriptor of the right type:
maps.arena.map_at, of a map the running program was loaded with: `HelperContext.used_maps`, the kernel's
used_maps) and then the pointer arguments against the run's address space, and call the compiled
map operations (maps/lib.py); the JIT's native twins (maps/emit.py, registered in NATIVE on import) make
the same checks in the same order and call the same functions. Results:
  - map pointer that is not a live map of a fitting type, or a map the program was not loaded with (another
    Runtime's, or one of its own runtime it does not reference; a program that uses a map-in-map outer map
    may reach every live map, see runenv.used_maps_of): lookup/reserve/query 0, others -EINVAL;
  - map-in-map outer maps: lookup returns the inner map pointer (0: empty), update/delete -EINVAL;
  - unreadable key/value/data, or a pop/peek destination that is not writable: lookup 0, others -EFAULT;
  - tail_call: index >= max_entries or empty slot -ENOENT, tail_call_limit reached -E2BIG (r0 gets the
    value and execution continues); otherwise it never returns.
`register_map_helpers(registry)` adds them to a registry.
"""
from __future__ import annotations

import ctypes

from ..jit.native_helpers import NATIVE
from ..maps import arena, emit
from ..maps import layout as L
from ..maps.base import KeyValueMap
from ..maps.lib import lib
from ..maps.queuestack import QueueMap
from ..maps.ring import PerfEventArrayMap, RingBufMap
from ..memory import PERM_R, PERM_W
from .registry import Helper, TailCall

emit.register(NATIVE)


def _map(ctx, addr: int, cls):
    """The live map at a descriptor address if the running program was loaded with it and it is a `cls`
    (a class, or a map type name), else None."""
    used = ctx.used_maps
    if used is not None and addr not in used:
        return None
    m = arena.map_at(addr)
    if isinstance(cls, str):
        return m if getattr(m, "map_type", None) == cls else None
    return m if isinstance(m, cls) else None


def _readable(ctx, addr: int, size: int) -> bool:
    return size == 0 or ctx.aspace.find(addr, size, PERM_R) is not None


def map_lookup_elem(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    m = _map(ctx, r1, KeyValueMap)
    if m is None or not _readable(ctx, r2, m.key_size):
        return 0
    addr = lib().lookup(r1, r2, L.CPU_CURRENT, 0)
    if addr and getattr(m, "outer", False):      # map-in-map: the inner map pointer itself (0: none)
        return ctypes.c_uint64.from_address(addr).value
    return addr


def map_update_elem(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    m = _map(ctx, r1, KeyValueMap)
    if m is None or getattr(m, "outer", False):  # programs only look up outer maps (kernel: verifier refuses)
        return -L.EINVAL
    if not (_readable(ctx, r2, m.key_size) and _readable(ctx, r3, m.value_size)):
        return -L.EFAULT
    return lib().update(r1, r2, r3, r4, L.CPU_CURRENT)


def map_delete_elem(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    m = _map(ctx, r1, KeyValueMap)
    if m is None or getattr(m, "outer", False):
        return -L.EINVAL
    if not _readable(ctx, r2, m.key_size):
        return -L.EFAULT
    return lib().delete(r1, r2)


def tail_call(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    m = _map(ctx, r2, "prog_array")
    if m is None:
        return -L.EINVAL
    idx = r3 & 0xFFFFFFFF
    if idx >= m.max_entries:
        return -L.ENOENT
    if ctx.tail_calls >= ctx.config.tail_call_limit:
        return -L.E2BIG
    prog = m.program(idx)
    if prog is None:
        return -L.ENOENT
    ctx.tail_calls += 1
    raise TailCall(prog, r1)


def perf_event_output(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    if _map(ctx, r2, PerfEventArrayMap) is None:
        return -L.EINVAL
    if not _readable(ctx, r4, r5):
        return -L.EFAULT
    return lib().perf_output(r2, r3, r4, r5)


def ringbuf_output(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    if _map(ctx, r1, RingBufMap) is None:
        return -L.EINVAL
    if not _readable(ctx, r2, r3):
        return -L.EFAULT
    return lib().rb_output(r1, r2, r3, r4)


def ringbuf_reserve(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    return lib().rb_reserve(r1, r2, r3) if _map(ctx, r1, RingBufMap) is not None else 0


def ringbuf_submit(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    lib().rb_commit(r1, r2, 0)
    return 0


def ringbuf_discard(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    lib().rb_commit(r1, r2, 1)
    return 0


def map_push_elem(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    m = _map(ctx, r1, QueueMap)
    if m is None:
        return -L.EINVAL
    if not _readable(ctx, r2, m.value_size):
        return -L.EFAULT
    return lib().push(r1, r2, r3)


def _pop(peek: int):
    def pop(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
        m = _map(ctx, r1, QueueMap)
        if m is None:
            return -L.EINVAL
        if ctx.aspace.find(r2, m.value_size, PERM_W) is None:
            return -L.EFAULT
        return lib().pop(r1, r2, peek)
    pop.__name__ = "map_peek_elem" if peek else "map_pop_elem"
    return pop


map_pop_elem, map_peek_elem = _pop(0), _pop(1)


def ringbuf_query(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    return lib().rb_query(r1, r2) if _map(ctx, r1, RingBufMap) is not None else 0


MAP_HELPERS = [
    Helper(1, "map_lookup_elem", map_lookup_elem, ("const_map_ptr", "ptr_to_map_key"), "map_value_or_null",
           native="map_lookup_elem"),
    Helper(2, "map_update_elem", map_update_elem,
           ("const_map_ptr", "ptr_to_map_key", "ptr_to_map_value", "anything"), native="map_update_elem"),
    Helper(3, "map_delete_elem", map_delete_elem, ("const_map_ptr", "ptr_to_map_key"), native="map_delete_elem"),
    Helper(12, "tail_call", tail_call, ("ptr_to_ctx", "const_map_ptr", "anything"), native="tail_call"),
    Helper(25, "perf_event_output", perf_event_output,
           ("ptr_to_ctx", "const_map_ptr", "anything", "ptr_to_mem", "const_size_or_zero"), gpl_only=True,
           native="perf_event_output"),
    Helper(130, "ringbuf_output", ringbuf_output, ("const_map_ptr", "ptr_to_mem", "const_size_or_zero",
                                                   "anything"), native="ringbuf_output"),
    Helper(131, "ringbuf_reserve", ringbuf_reserve, ("const_map_ptr", "const_size", "anything"), "mem_or_null",
           native="ringbuf_reserve"),
    Helper(132, "ringbuf_submit", ringbuf_submit, ("ptr_to_mem", "anything"), "void", native="ringbuf_submit"),
    Helper(133, "ringbuf_discard", ringbuf_discard, ("ptr_to_mem", "anything"), "void",
           native="ringbuf_discard"),
    Helper(134, "ringbuf_query", ringbuf_query, ("const_map_ptr", "anything"), native="ringbuf_query"),
    Helper(87, "map_push_elem", map_push_elem, ("const_map_ptr", "ptr_to_map_value", "anything"),
           native="map_push_elem"),
    Helper(88, "map_pop_elem", map_pop_elem, ("const_map_ptr", "ptr_to_uninit_mem"), native="map_pop_elem"),
    Helper(89, "map_peek_elem", map_peek_elem, ("const_map_ptr", "ptr_to_uninit_mem"), native="map_peek_elem"),
]


def register_map_helpers(registry):
    """Register the map helpers in `registry` (replacing helpers with the same ids); returns it."""
    for h in MAP_HELPERS:
        registry.register(h, replace=True)
    return registry
