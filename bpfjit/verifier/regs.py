"""Register states of the verifier: `Reg` (immutable) with its type, the scalar facts (value of a scalar,
variable offset of a pointer), the fixed offset, and what the pointer points to; their kernel-style text;
`regsafe` (an explored register state covers a new one, for state pruning).

Types (the kernel's names): not_init, scalar, ctx, fp (stack pointer of frame `frame`), map_ptr
(CONST_PTR_TO_MAP; map_ptr_or_null: an outer map's lookup result, `map` its inner template), map_value / map_value_or_null (into `map`'s value), mem / mem_or_null (`size` bytes:
a raw program's memory, ringbuf_reserve's record; `ref` is the reference id that must be released),
pkt / pkt_meta (packet data / metadata start plus `off` and a variable offset; `range`: bytes from the
pointer's base, which all pointers of the same `id` share, proven inside the packet; negative: AT_PKT_END /
BEYOND_PKT_END, the pointer is known to be at / beyond the end) and pkt_end (the packet's end).
Access rules are in access.py; nothing here checks a program.
"""
from __future__ import annotations

from . import scalar as S

NOT_INIT, SCALAR, CTX, FP, MAP_PTR = "not_init", "scalar", "ctx", "fp", "map_ptr"
MAP_VALUE, MAP_VALUE_OR_NULL, MEM, MEM_OR_NULL = "map_value", "map_value_or_null", "mem", "mem_or_null"
PKT, PKT_END, PKT_META = "pkt", "pkt_end", "pkt_meta"
MAP_PTR_OR_NULL = "map_ptr_or_null"        # an outer map's lookup result: the inner map (its template) or NULL
OR_NULL = {MAP_VALUE_OR_NULL: MAP_VALUE, MEM_OR_NULL: MEM, MAP_PTR_OR_NULL: MAP_PTR}
# The id of a raw program's length scalar (r2 at entry and its copies): a comparison that bounds it from below
# proves that many bytes of the run's memory (the kernel learns a packet's range from data_end the same way).
MEMLEN_ID = -1
POINTERS = (CTX, FP, MAP_PTR, MAP_VALUE, MAP_VALUE_OR_NULL, MEM, MEM_OR_NULL, PKT, PKT_END, PKT_META,
            MAP_PTR_OR_NULL)
PKT_TYPES = (PKT, PKT_END, PKT_META)       # pointers into the same packet (they may be compared/subtracted)
AT_PKT_END, BEYOND_PKT_END = -1, -2        # `range` of a pkt pointer known to be at / past pkt_end


class Reg:
    __slots__ = ("type", "s", "off", "map", "id", "ref", "frame", "size", "range", "_k")

    def __init__(self, type, s=S.UNKNOWN, off=0, map=None, id=0, ref=0, frame=0, size=0, range=0):
        self.type, self.s, self.off, self.map = type, s, off, map
        self.id, self.ref, self.frame, self.size = id, ref, frame, size
        self.range = range
        self._k = None

    def key(self):
        """Hashable identity of the abstract value (exact equality)."""
        k = self._k
        if k is None:
            k = self._k = (self.type, self.s.key(), self.off, id(self.map), self.id, self.ref, self.frame,
                           self.size, self.range)
        return k

    def but(self, **kw) -> "Reg":
        r = Reg(self.type, self.s, self.off, self.map, self.id, self.ref, self.frame, self.size, self.range)
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    def __eq__(self, o):
        return self is o or (isinstance(o, Reg) and self.key() == o.key())

    def __hash__(self):
        return hash(self.key())

    @property
    def is_ptr(self) -> bool:
        return self.type is not SCALAR and self.type is not NOT_INIT

    @property
    def is_scalar(self) -> bool:
        return self.type is SCALAR

    def fmt(self) -> str:
        t = self.type
        if t is SCALAR:
            return self.s.fmt()
        if t is NOT_INIT:
            return "?"
        if t is FP and self.s.is_const and self.s.value == 0:
            return f"fp{self.off}" if self.frame == 0 else f"fp[{self.frame}]{self.off}"
        parts = []
        if self.id:
            parts.append(f"id={self.id}")
        if self.ref:
            parts.append(f"ref_obj_id={self.ref}")
        if self.map is not None:
            name = getattr(self.map, "name", None)
            if name:
                parts.append(f"map={name}")
            parts.append(f"ks={self.map.key_size},vs={self.map.value_size}")
        if self.off:
            parts.append(f"off={self.off}")
        if t in (MEM, MEM_OR_NULL):
            parts.append(f"sz={self.size}")
        if t is PKT or t is PKT_META:
            parts.append(f"r={self.range}")
        if not (self.s.is_const and self.s.value == 0):
            parts.append(self.s.fmt()[7:-1] if not self.s.is_const else f"imm={self.s.value}")
        return f"{t}({','.join(p for p in parts if p)})"


NOT_INIT_REG = Reg(NOT_INIT)
UNKNOWN_REG = Reg(SCALAR)


def scalar(s: S.Scalar) -> Reg:
    return UNKNOWN_REG if s is S.UNKNOWN else Reg(SCALAR, s)


_CONST_REGS: dict = {}


def const(v: int) -> Reg:
    r = _CONST_REGS.get(v)
    if r is None:
        r = Reg(SCALAR, S.const(v))
        if len(_CONST_REGS) < 65536:
            _CONST_REGS[v] = r
    return r


def ptr(type, **kw) -> Reg:
    return Reg(type, S.ZERO, **kw)


def regsafe(old: Reg, new: Reg, idmap: dict) -> bool:
    """Whether everything proven from `old` holds for `new` (old is at least as general)."""
    if old is new:
        return True
    t = old.type
    if t is NOT_INIT:
        return True
    if t is not new.type:
        return False
    if t is SCALAR:
        return old.s.contains(new.s) and (old.id != MEMLEN_ID or new.id == MEMLEN_ID)
    if t is PKT or t is PKT_META:
        # at least the old proven range; a negative one (at/past the end) decided branches: the same fact
        if old.range < 0:
            if new.range != old.range:
                return False
        elif new.range < 0:
            if old.range:
                return False
        elif new.range < old.range:
            return False
    if not (old.off == new.off and old.map is new.map and old.frame == new.frame and old.size == new.size
            and old.s.contains(new.s)):
        return False
    return check_id(old.id, new.id, idmap) and check_id(old.ref, new.ref, idmap)


def check_id(a: int, b: int, idmap: dict) -> bool:
    """ids must correspond one to one between the old and the new state."""
    if not a and not b:
        return True
    if not a or not b:
        return False
    seen = idmap.get(a)
    if seen is None:
        idmap[a] = b
        return True
    return seen == b
