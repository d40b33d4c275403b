"""Memory access rules: loads, stores and atomics through a pointer register (stack, context, map value,
memory, packet), the per-byte stack state they read and update, the context field rules of the program
type (`ProgType.fields`: which field an access hits, read/write permission, full or narrower loads; loads of
`data` / `data_end` / `data_meta` give packet pointers), and the helper-argument form of the same checks
(a pointer plus a size range). Every refusal is a `VerifierError` with the kernel's message.

The caller (core.py) decodes instructions and owns the state; this module never walks the program.
"""
from __future__ import annotations

from . import scalar as S
from .regs import (CTX, FP, MAP_VALUE, MEM, NOT_INIT, PKT, PKT_END, PKT_META, SCALAR, UNKNOWN_REG, Reg, const,
                   ptr, scalar)
from .state import INVALID_SLOT
from ..errors import VerifierError
from ..progtypes import valid_ctx_access

MAX_VAR_OFF = 1 << 29
MAX_PACKET_OFF = 0xFFFF
CTX_KIND_TYPES = {"pkt": PKT, "pkt_end": PKT_END, "pkt_meta": PKT_META}   # CtxField.kind -> register type
_WHAT = {"read": " read from", "write": " write to", "atomic": " write to"}


def err(msg: str, pc: int):
    return VerifierError(msg, pc)


def loaded(size: int) -> Reg:
    """An unknown value loaded with a zero-extending load of `size` bytes."""
    return UNKNOWN_REG if size == 8 else scalar(S.unsigned_range(0, (1 << (8 * size)) - 1))


def _region_bounds(v, reg: Reg, regno: int, off: int, size_min: int, size_max: int, limit: int, pc: int,
                   what: str):
    """Check [reg + off, + size) inside [0, limit) for every value of reg's variable offset."""
    var = reg.s
    if not var.is_const:
        if var.smin < 0:
            raise err(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) "
                      f"check.", pc)
        if var.umax >= MAX_VAR_OFF:
            raise err(f"R{regno} unbounded memory access, make sure to bounds check any such access", pc)
    lo = reg.off + off + var.smin
    hi = reg.off + off + var.smax + size_max
    if lo < 0 or hi > limit:
        bad = lo if lo < 0 else reg.off + off + var.smax
        if reg.type is MAP_VALUE:
            raise err(f"invalid access to map value, value_size={limit} off={bad} size={size_max}", pc)
        raise err(f"invalid access to memory, mem_size={limit} off={bad} size={size_max}", pc)


def check_mem(v, st, pc: int, regno: int, off: int, size: int, kind: str, value: Reg | None = None) -> Reg | None:
    """A load (kind "read": returns the loaded register), store ("write") or atomic ("atomic") of `size`
    bytes at reg + off."""
    reg = st.cur.regs[regno]
    t = reg.type
    if t is NOT_INIT:
        raise err(f"R{regno} !read_ok", pc)
    seen = v.access_types.get(pc)
    if seen is None:
        v.access_types[pc] = {t}
    else:
        seen.add(t)
    if t is FP:
        return stack_access(v, st, pc, regno, reg, off, size, kind, value)
    if t is MAP_VALUE or t is MEM:
        limit = reg.map.value_size if t is MAP_VALUE else reg.size
        if kind != "read" and t is MAP_VALUE and getattr(reg.map, "frozen", False):
            raise err(f"write into map forbidden, value_size={limit} off={off + reg.off} size={size}", pc)
        _region_bounds(v, reg, regno, off, size, size, limit, pc, kind)
        return loaded(size) if kind == "read" else None
    if t is CTX:
        if kind == "atomic":
            raise err(f"BPF_ATOMIC stores into R{regno} ctx is not allowed", pc)
        if reg.off:
            raise err(f"dereference of modified ctx ptr R{regno} off={reg.off} disallowed", pc)
        if not reg.s.is_const:
            raise err(f"variable ctx access var_off={reg.s.fmt()} disallowed", pc)
        o = off + reg.s.value
        field = ctx_field(v.ptype, o, size, kind != "read")
        if field is False:
            raise err(f"invalid bpf_context access off={o} size={size}", pc)
        if kind == "read" and field is not None and field.kind != "scalar":
            return ptr(CTX_KIND_TYPES[field.kind])
        return loaded(size) if kind == "read" else None
    if t is PKT or t is PKT_META:
        if kind == "atomic":
            raise err(f"BPF_ATOMIC stores into R{regno} {t} is not allowed", pc)
        if kind == "write" and not pkt_writable(v.ptype, t):
            raise err("cannot write into packet", pc)
        check_packet(reg, regno, off, size, pc)
        return loaded(size) if kind == "read" else None
    raise err(f"R{regno} invalid mem access '{t}'", pc)


# ------------------------------------------------------------------------------------ context and packet
def ctx_field(ptype, off: int, size: int, write: bool):
    """The context field an access of `size` bytes at `off` hits when the program type allows it, None when
    the type has no field table (the seed's `valid_ctx_access` decides), False when refused.

    The kernel's rules for `__sk_buff` / `xdp_md` / `pt_regs`, from the table: the access is naturally
    aligned and inside one field; the field is readable (writable) for the type; a store writes the whole
    field (of an array field such as `cb` or `remote_ip6`: any aligned part); a load of a packet pointer
    field reads the whole field; other loads may be narrower (the kernel's narrow context loads)."""
    fields = ptype.fields
    if not fields:
        return None if valid_ctx_access(ptype, off, size, write) else False
    if off < 0 or off % size:
        return False
    for f in fields:
        if f.off <= off < f.off + f.size:
            break
    else:
        return False
    if off + size > f.off + f.size:
        return False
    if write:
        if not f.write or ptype.ctx_readonly or f.kind != "scalar":
            return False
        return f if (f.size > 8 or (off == f.off and size == f.size)) else False
    if not f.read:
        return False
    if f.kind != "scalar" and (off != f.off or size != f.size):
        return False
    return f


def pkt_writable(ptype, t: str) -> bool:
    """Whether the program type may store into packet data (t "pkt") or metadata ("pkt_meta"): its
    `ProgType.pkt_write` (xdp, tc), or the `write` flag of its context field of that kind."""
    if getattr(ptype, "pkt_write", False):
        return True
    kind = "pkt" if t is PKT else "pkt_meta"
    return any(f.kind == kind and f.write for f in ptype.fields)


def check_packet(reg: Reg, regno: int, off: int, size: int, pc: int) -> None:
    """An access of `size` bytes at reg + off inside the range proven for reg (the kernel's
    check_packet_access: the variable offset is part of the range's base, so only the fixed offset counts)."""
    if reg.s.smin < 0:
        raise err(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.",
                  pc)
    o = reg.off + off
    if o < 0 or reg.range < 0 or o + size > reg.range:
        raise err(f"invalid access to packet, off={o} size={size}, R{regno}(id={reg.id},off={o},"
                  f"r={reg.range})", pc)


# ------------------------------------------------------------------------------------ the stack
def _stack_range(v, st, pc, regno, reg, off, size, what, indirect=False):
    """(frame, lo, hi) byte offsets an access may touch; checks bounds and alignment, records depth."""
    var = reg.s
    base = reg.off + off
    lo, hi = base + var.smin, base + var.smax + size
    if lo < -v.stack_size or hi > 0 or (not var.is_const and var.umax >= MAX_VAR_OFF and var.smin >= 0):
        if indirect:
            raise err(f"invalid indirect access to stack R{regno} off={base} size={size}", pc)
        raise err(f"invalid{_WHAT[what]} stack R{regno} off={base + (var.smin if var.is_const else 0)} "
                  f"size={size}", pc)
    if not indirect and size > 1:
        if var.is_const:
            if (base + var.value) % size:
                raise err(f"misaligned stack access off {base + var.value} size {size}", pc)
        elif base % size or (var.t[0] | var.t[1]) & (size - 1):
            raise err(f"misaligned stack access off {var.fmt()}+{base} size {size}", pc)
    frame = st.frames[reg.frame]
    v.note_depth(frame.subprog, -lo)
    return frame, lo, hi


def stack_access(v, st, pc, regno, reg, off, size, kind, value):
    frame, lo, hi = _stack_range(v, st, pc, regno, reg, off, size, kind)
    if value is not None and value.type is FP and value.frame > reg.frame:
        raise err("cannot spill pointers to stack into stack frame of the caller", pc)
    if reg.s.is_const:
        if kind == "read":
            return stack_read(frame, lo, size, pc)
        if kind == "atomic":
            stack_read(frame, lo, size, pc)
            spill = frame.stack.get((-lo - 1) // 8, INVALID_SLOT)[0]
            if spill is not None and spill.type is not SCALAR:
                raise err("attempt to corrupt spilled pointer on stack", pc)
            stack_write(frame, lo, size, None, pc)
            return None
        stack_write(frame, lo, size, value, pc)
        return None
    # variable offset
    if kind == "read" or kind == "atomic":
        check_init(frame, lo, hi, pc, lambda o, i: f"invalid variable-offset read from stack R{regno} "
                   f"var_off={reg.s.fmt()} off={reg.off + off} size={size}")
        if kind == "read":
            return loaded(size)
    zero = value is not None and value.type is SCALAR and value.s.is_const and value.s.value == 0
    smear(frame, lo, hi, zero)
    return None


def stack_read(frame, off: int, size: int, pc: int) -> Reg:
    k = (-off - 1) // 8
    spill, kinds = frame.stack.get(k, INVALID_SLOT)
    b = off + 8 * (k + 1)
    if spill is not None:
        if size == 8:
            return spill
        if spill.type is not SCALAR:
            raise err("invalid size of register fill", pc)
        return scalar(S.truncate(spill.s, size)) if b == 0 else loaded(size)
    part = kinds[b:b + size]
    for i, c in enumerate(part):
        if c == "i":
            raise err(f"invalid read from stack off {off}+{i} size {size}", pc)
    if part == "z" * size:
        return const(0)
    return loaded(size)


def stack_write(frame, off: int, size: int, value: Reg | None, pc: int) -> None:
    """value None: an unknown scalar (atomics, helper writes)."""
    k = (-off - 1) // 8
    stack = frame.stack
    if size == 8 and value is not None:
        stack[k] = (value, "ssssssss")
        return
    if value is not None and value.type is not SCALAR:
        raise err("invalid size of register spill", pc)
    spill, kinds = stack.get(k, INVALID_SLOT)
    if spill is not None:
        kinds = "mmmmmmmm"
    b = off + 8 * (k + 1)
    c = "z" if value is not None and value.s.is_const and value.s.value & ((1 << (8 * size)) - 1) == 0 else "m"
    stack[k] = (None, kinds[:b] + c * size + kinds[b + size:])


def check_init(frame, lo: int, hi: int, pc: int, msg) -> None:
    """Every byte in lo..hi-1 initialised; msg(off, i) builds the refusal."""
    for o in range(lo, hi):
        k = (-o - 1) // 8
        c = frame.stack.get(k, INVALID_SLOT)[1][o + 8 * (k + 1)]
        if c == "i":
            raise err(msg(lo, o - lo), pc)


def smear(frame, lo: int, hi: int, zero: bool, init: bool = False) -> None:
    """A write somewhere in lo..hi-1 (variable offset, or a helper's output when init): bytes already
    initialised stay initialised (misc, zero if the value is zero); init=True makes every byte misc."""
    stack = frame.stack
    for k in range((-hi) // 8, (-lo - 1) // 8 + 1):
        spill, kinds = stack.get(k, INVALID_SLOT)
        base = -8 * (k + 1)
        out = []
        for i, c in enumerate(kinds):
            o = base + i
            if lo <= o < hi:
                if init:
                    c = "m"
                elif c == "s":
                    c = "m"
                elif c == "z" and not zero:
                    c = "m"
            elif c == "s":
                c = "m"
            out.append(c)
        stack[k] = (None, "".join(out))


# ------------------------------------------------------------------------------------ helper arguments
def check_helper_mem(v, st, pc: int, regno: int, size_min: int, size_max: int, write: bool,
                     stack_only: bool = False, pkt_ok: bool = False) -> None:
    """A helper reads (or writes) size_min..size_max bytes at the pointer in regno; pkt_ok: the helper may
    be given a packet pointer (the kernel's `pkt_access` helpers)."""
    reg = st.cur.regs[regno]
    t = reg.type
    if size_max == 0:
        return
    if t is FP:
        frame, lo, hi = _stack_range(v, st, pc, regno, reg, 0, size_max, "read", indirect=True)
        if write:
            if reg.s.is_const:
                smear(frame, lo, hi, False, init=True)
            else:
                smear(frame, lo, hi, False)
        else:
            check_init(frame, lo, hi, pc, lambda o, i: f"invalid indirect read from stack R{regno} off {o}+{i} "
                       f"size {size_max}")
        return
    if stack_only and not (t is MAP_VALUE and not write and getattr(reg.map, "frozen", False)):
        # the seed's rule: on the stack; a read-only map value (.rodata, where clang puts a bpf_printk
        # format) is constant too, and the kernel's MEM_RDONLY prototypes accept it
        raise err(f"R{regno} type={t} expected=fp", pc)
    if t is PKT or t is PKT_META:
        if not pkt_ok:
            raise err("helper access to the packet is not allowed", pc)
        if write and not pkt_writable(v.ptype, t):
            raise err("cannot write into packet", pc)
        check_packet(reg, regno, 0, size_max, pc)
        return
    if t is MAP_VALUE or t is MEM:
        if write and t is MAP_VALUE and getattr(reg.map, "frozen", False):
            raise err(f"write into map forbidden, value_size={reg.map.value_size} off={reg.off} size={size_max}",
                      pc)
        _region_bounds(v, reg, regno, 0, size_min, size_max, reg.map.value_size if t is MAP_VALUE else reg.size,
                       pc, "write" if write else "read")
        return
    if t is NOT_INIT:
        raise err(f"R{regno} !read_ok", pc)
    raise err(f"R{regno} type={t} expected=fp, {'pkt, pkt_meta, ' if pkt_ok else ''}map_value, mem", pc)
