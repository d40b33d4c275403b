"""Helper calls: the arguments checked against the registry's prototypes (`Helper.args`), map helpers
against the maps they are given (type, key and value sizes), GPL-only helpers against the license, the
return type set in r0 (an outer map's lookup: map_ptr_or_null of its inner template), references acquired (ringbuf_reserve) and released (ringbuf_submit/discard).

What the prototypes do not say is kept here as small tables keyed by helper name: the map types a map
helper accepts, which helpers release the memory they get, which `ptr_to_stack` helpers write it, which may
be given packet pointers and which move the packet (invalidating every packet pointer).
"""
from __future__ import annotations

from . import scalar as S
from .access import MAX_VAR_OFF, check_helper_mem, err
from .state import rewrite_regs
from .regs import (CTX, MAP_PTR, MAP_PTR_OR_NULL, MAP_VALUE_OR_NULL, MEM, MEM_OR_NULL, NOT_INIT, NOT_INIT_REG, PKT_TYPES,
                   SCALAR, UNKNOWN_REG, Reg)
from ..helpers.registry import license_is_gpl_compatible

KV_MAPS = frozenset({"array", "percpu_array", "hash", "percpu_hash", "lru_hash", "lru_percpu_hash"})
OUTER_MAPS = frozenset({"array_of_maps", "hash_of_maps"})    # map-in-map: programs may only look them up
MAP_TYPES_OF = {
    "map_lookup_elem": KV_MAPS | OUTER_MAPS, "map_update_elem": KV_MAPS, "map_delete_elem": KV_MAPS,
    "tail_call": frozenset({"prog_array"}), "perf_event_output": frozenset({"perf_event_array"}),
    "ringbuf_output": frozenset({"ringbuf"}), "ringbuf_reserve": frozenset({"ringbuf"}),
    "ringbuf_query": frozenset({"ringbuf"}), "map_push_elem": frozenset({"queue", "stack"}),
    "map_pop_elem": frozenset({"queue", "stack"}), "map_peek_elem": frozenset({"queue", "stack"}),
}
RELEASES = frozenset({"ringbuf_submit", "ringbuf_discard"})   # arg 1 is released (OBJ_RELEASE)
# helpers whose memory arguments may point into the packet (the kernel's `pkt_access` prototypes)
PKT_ACCESS = frozenset({"map_lookup_elem", "map_update_elem", "map_delete_elem", "map_push_elem",
                        "map_pop_elem", "map_peek_elem", "csum_diff", "csum_update", "sk_lookup_tcp",
                        "sk_lookup_udp", "skc_lookup_tcp", "tcp_check_syncookie", "tcp_gen_syncookie"})
# helpers that may move or resize the packet: every packet pointer is invalid after them (the kernel's
# bpf_helper_changes_pkt_data)
CHANGES_PKT_DATA = frozenset({
    "skb_store_bytes", "l3_csum_replace", "l4_csum_replace", "skb_pull_data", "skb_change_tail",
    "skb_change_head", "skb_change_proto", "skb_change_type", "skb_adjust_room", "skb_vlan_push",
    "skb_vlan_pop", "clone_redirect", "xdp_adjust_head", "xdp_adjust_tail", "xdp_adjust_meta",
    "msg_pull_data", "msg_push_data", "msg_pop_data", "lwt_push_encap", "lwt_seg6_store_bytes",
    "lwt_seg6_adjust_srh", "lwt_seg6_action", "skb_ecn_set_ce"})
STACK_WRITERS = frozenset({"probe_read"})                      # ptr_to_stack output buffers
SIZE_ARGS = ("const_size", "const_size_or_zero")
MEM_ARGS = ("ptr_to_mem", "ptr_to_uninit_mem", "ptr_to_stack")


def check_call(v, st, pc: int, h) -> None:
    """Check a call of helper h in state st and apply its effect (r0, r1-r5 clobbered, references)."""
    if h.gpl_only and not license_is_gpl_compatible(v.program.license):
        raise err("cannot call GPL-restricted function from non-GPL compatible program", pc)
    regs = st.cur.regs
    pkt_ok = h.name in PKT_ACCESS
    cmap = None
    pending = None            # (regno, arg type) of a memory argument waiting for its size
    size_arg = None
    released = None
    for i, a in enumerate(h.args):
        regno = i + 1
        reg = regs[regno]
        if reg.type is NOT_INIT:
            raise err(f"R{regno} !read_ok", pc)
        if a == "anything":
            continue
        if a == "const_map_ptr":
            if reg.type is not MAP_PTR:
                raise err(f"R{regno} type={reg.type} expected=map_ptr", pc)
            cmap = reg.map
            allowed = MAP_TYPES_OF.get(h.name)
            mtype = getattr(cmap, "map_type", "")
            if allowed is not None and mtype not in allowed:
                raise err(f"cannot pass map_type {mtype} into func bpf_{h.name}#{h.id}", pc)
        elif a in ("ptr_to_map_key", "ptr_to_map_value"):
            if cmap is None:
                raise err(f"invalid map_ptr to access map->{'key' if a.endswith('key') else 'value'}", pc)
            size = cmap.key_size if a == "ptr_to_map_key" else cmap.value_size
            check_helper_mem(v, st, pc, regno, size, size, False, pkt_ok=pkt_ok)
        elif a == "ptr_to_ctx":
            if reg.type is not CTX and not raw_ctx(v, reg):
                raise err(f"R{regno} type={reg.type} expected=ctx", pc)
            if reg.off or not (reg.s.is_const and reg.s.value == 0):
                raise err(f"dereference of modified ctx ptr R{regno} off={reg.off} disallowed", pc)
        elif a == "ptr_to_mem" and h.name in RELEASES:
            if reg.type is not MEM or not reg.ref:
                raise err(f"R{regno} type={reg.type} expected=ringbuf_mem", pc)
            if reg.off or not (reg.s.is_const and reg.s.value == 0):
                raise err(f"R{regno} must have zero offset when passed to release func", pc)
            released = reg.ref
        elif a in MEM_ARGS:
            pending = (regno, a)
        elif a in SIZE_ARGS:
            if reg.type is not SCALAR:
                raise err(f"R{regno} type={reg.type} expected=scalar", pc)
            s = reg.s
            zero_ok = a == "const_size_or_zero"
            if pending is not None and pending[1] == "ptr_to_stack" and not s.is_const:
                raise err(f"R{regno} is not a known constant", pc)
            if s.smin < 0:
                raise err(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) "
                          f"check.", pc)
            if s.umax >= MAX_VAR_OFF:
                raise err(f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'", pc)
            if s.umin == 0 and not zero_ok:
                raise err(f"R{regno} invalid zero-sized read", pc)
            size_arg = s
            if pending is not None:
                pno, kind = pending
                write = kind == "ptr_to_uninit_mem" or (kind == "ptr_to_stack" and h.name in STACK_WRITERS)
                check_helper_mem(v, st, pc, pno, s.umin, s.umax, write, stack_only=kind == "ptr_to_stack",
                                 pkt_ok=pkt_ok)
                pending = None
        else:
            raise err(f"helper bpf_{h.name}#{h.id}: argument type {a} is not supported by the verifier", pc)
    if pending is not None and cmap is not None:      # a map value buffer sized by the map
        check_helper_mem(v, st, pc, pending[0], cmap.value_size, cmap.value_size, pending[1] != "ptr_to_mem",
                         pkt_ok=pkt_ok)
        pending = None
    if pending is not None:
        raise err(f"helper bpf_{h.name}#{h.id}: memory argument R{pending[0]} has no size argument", pc)
    if h.name == "tail_call" and st.refs:
        raise err("tail_call would lead to reference leak", pc)
    if released is not None:
        release(st, released)
    if h.name in CHANGES_PKT_DATA:
        clear_pkt_pointers(st)
    for r in range(1, 6):
        regs[r] = NOT_INIT_REG
    ret = h.ret
    if ret == "integer":
        regs[0] = UNKNOWN_REG
    elif ret == "void":
        regs[0] = NOT_INIT_REG
    elif ret == "map_value_or_null":
        if cmap is None:
            raise err(f"helper bpf_{h.name}#{h.id} returns a map value without a map argument", pc)
        if getattr(cmap, "map_type", "") in OUTER_MAPS:      # the inner map, of the outer map's template
            regs[0] = Reg(MAP_PTR_OR_NULL, S.ZERO, map=cmap.inner, id=v.new_id())
        else:
            regs[0] = Reg(MAP_VALUE_OR_NULL, S.ZERO, map=cmap, id=v.new_id())
    elif ret == "mem_or_null":
        if size_arg is None or not size_arg.is_const:
            raise err(f"R{2} is not a known constant", pc)
        rid = v.new_id()
        regs[0] = Reg(MEM_OR_NULL, S.ZERO, id=rid, ref=rid, size=size_arg.value)
        st.refs = st.refs + ((rid, pc),)
    else:
        regs[0] = UNKNOWN_REG


def raw_ctx(v, reg) -> bool:
    """A raw program's context is its memory (r1 at entry, unmoved: a tail-call target sees it at offset 0)."""
    return (v.ptype.name == "raw" and reg.type is MEM and not reg.ref and reg.off == 0 and reg.s.is_const
            and reg.s.value == 0)


def clear_pkt_pointers(st) -> None:
    """The packet may have moved: every packet pointer (registers and spills, all frames) becomes an
    unknown scalar, so a later dereference is refused until the program reloads data/data_end."""
    rewrite_regs(st, lambda r: UNKNOWN_REG if r.type in PKT_TYPES else None)


def release(st, ref: int) -> None:
    """Drop reference `ref`: every register and spill holding it becomes unusable."""
    st.refs = tuple(r for r in st.refs if r[0] != ref)
    for f in st.frames:
        regs = f.regs
        for i in range(11):
            if regs[i].ref == ref:
                regs[i] = NOT_INIT_REG
        for k, (spill, kinds) in list(f.stack.items()):
            if spill is not None and spill.ref == ref:
                f.stack[k] = (None, "mmmmmmmm")
