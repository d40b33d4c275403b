"""Scalar value tracking: a tnum plus unsigned/signed 64-bit and 32-bit ranges, kept consistent with each
other the way the kernel's reg_bounds_sync does, and the transfer functions of ALU operations and of
conditional jumps (range refinement on each side of a branch).

A `Scalar` is immutable (states share them freely). Functions that can find a range empty (a branch side
that cannot be taken) return None. Nothing about pointers or registers lives here (see regs.py).
"""
from __future__ import annotations

from . import tnum as T

M64, M32 = T.M64, T.M32
S64MIN, S64MAX = -(1 << 63), (1 << 63) - 1
S32MIN, S32MAX = -(1 << 31), (1 << 31) - 1
BIT63, BIT31 = 1 << 63, 1 << 31


def sx64(v: int) -> int:
    return v - (1 << 64) if v & BIT63 else v


def sx32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v & BIT31 else v


def sx(v: int, w: int) -> int:
    return sx64(v) if w == 64 else sx32(v)


LIMITS = {64: (M64, S64MIN, S64MAX), 32: (M32, S32MIN, S32MAX)}


class Scalar:
    __slots__ = ("t", "umin", "umax", "smin", "smax", "u32min", "u32max", "s32min", "s32max", "_h", "_k")

    def __init__(self, t, umin, umax, smin, smax, u32min, u32max, s32min, s32max):
        self.t = t
        self.umin, self.umax, self.smin, self.smax = umin, umax, smin, smax
        self.u32min, self.u32max, self.s32min, self.s32max = u32min, u32max, s32min, s32max
        self._h = None
        self._k = None

    def key(self):
        k = self._k
        if k is None:
            k = self._k = (self.t, self.umin, self.umax, self.smin, self.smax, self.u32min, self.u32max,
                           self.s32min, self.s32max)
        return k

    def __eq__(self, o):
        return self is o or (isinstance(o, Scalar) and self.key() == o.key())

    def __hash__(self):
        if self._h is None:
            self._h = hash(self.key())
        return self._h

    @property
    def is_const(self) -> bool:
        return self.t[1] == 0

    @property
    def value(self) -> int:
        return self.t[0]

    def contains(self, o: "Scalar") -> bool:
        """Every value of o is a value of self (range_within + tnum_in)."""
        return (self is o or (self.umin <= o.umin and o.umax <= self.umax and self.smin <= o.smin
                and o.smax <= self.smax and self.u32min <= o.u32min and o.u32max <= self.u32max
                and self.s32min <= o.s32min and o.s32max <= self.s32max and T.contains(self.t, o.t)))

    def view(self, w: int):
        """(tnum, umin, umax, smin, smax) of the low `w` bits."""
        if w == 64:
            return (self.t, self.umin, self.umax, self.smin, self.smax)
        return (T.low32(self.t), self.u32min, self.u32max, self.s32min, self.s32max)

    def fmt(self) -> str:
        if self.is_const:
            return str(sx64(self.value)) if self.smin < 0 and self.value > 0xFFFF else str(self.value)
        parts = []
        if self.smin != S64MIN and self.smin != self.umin:
            parts.append(f"smin={self.smin}")
        if self.smax != S64MAX and self.smax != self.umax:
            parts.append(f"smax={self.smax}")
        if self.umin:
            parts.append(f"umin={self.umin}")
        if self.umax != M64:
            parts.append(f"umax={self.umax}")
        if self.s32min != S32MIN and self.s32min != self.u32min:
            parts.append(f"smin32={self.s32min}")
        if self.s32max != S32MAX and self.s32max != self.u32max:
            parts.append(f"smax32={self.s32max}")
        if self.u32min and self.u32min != self.umin:
            parts.append(f"umin32={self.u32min}")
        if self.u32max != M32 and self.u32max != self.umax:
            parts.append(f"umax32={self.u32max}")
        if self.t[1] != M64:
            parts.append(f"var_off={T.fmt(self.t)}")
        return "scalar(" + ",".join(parts) + ")"


def make(t, umin, umax, smin, smax, u32min, u32max, s32min, s32max) -> Scalar | None:
    """A Scalar from possibly inconsistent facts, refined to a fixed point; None when they admit no value."""
    tv, tm = t
    for _ in range(3):
        # ranges from the tnum
        lv, lm = tv & M32, tm & M32
        if lv > u32min:
            u32min = lv
        if lv | lm < u32max:
            u32max = lv | lm
        x = lv | (lm & BIT31)
        x = x - 0x100000000 if x & BIT31 else x
        if x > s32min:
            s32min = x
        x = lv | (lm & 0x7FFFFFFF)
        x = x - 0x100000000 if x & BIT31 else x
        if x < s32max:
            s32max = x
        if tv > umin:
            umin = tv
        if tv | tm < umax:
            umax = tv | tm
        x = tv | (tm & BIT63)
        x = x - 0x10000000000000000 if x & BIT63 else x
        if x > smin:
            smin = x
        x = tv | (tm & (BIT63 - 1))
        if x < smax:
            smax = x
        if umin > umax or smin > smax or u32min > u32max or s32min > s32max:
            return None
        # 32-bit facts from 64-bit ranges whose upper halves agree
        if umin >> 32 == umax >> 32:
            u32min, u32max = max(u32min, umin & M32), min(u32max, umax & M32)
            a, b = sx32(umin), sx32(umax)
            if a <= b:
                s32min, s32max = max(s32min, a), min(s32max, b)
        if smin >> 32 == smax >> 32:
            a, b = sx32(smin), sx32(smax)
            if a <= b:
                s32min, s32max = max(s32min, a), min(s32max, b)
            a, b = smin & M32, smax & M32
            if a <= b:
                u32min, u32max = max(u32min, a), min(u32max, b)
        # signed <-> unsigned, 32 bits
        if (u32min ^ u32max) & BIT31 == 0:
            a, b = sx32(u32min), sx32(u32max)
            s32min, s32max = max(s32min, a), min(s32max, b)
        if s32min >= 0 or s32max < 0:
            u32min, u32max = max(u32min, s32min & M32), min(u32max, s32max & M32)
        # signed <-> unsigned, 64 bits
        if (umin ^ umax) & BIT63 == 0:
            a, b = sx64(umin), sx64(umax)
            smin, smax = max(smin, a), min(smax, b)
        if smin >= 0 or smax < 0:
            umin, umax = max(umin, smin & M64), min(umax, smax & M64)
        if umin > umax or smin > smax or u32min > u32max or s32min > s32max:
            return None
        # 64-bit from 32-bit when the upper half is fixed
        if umin >> 32 == umax >> 32:
            hi = umin & ~M32 & M64
            umin = max(umin, hi | u32min)
            umax = min(umax, hi | u32max)
            if umin > umax:
                return None
        # tnum from ranges
        chi = umin ^ umax
        if chi:
            d = (1 << chi.bit_length()) - 1
            rv, rm = umin & ~d, d
        else:
            rv, rm = umin, 0
        if (tv ^ rv) & ~(tm | rm) & M64:
            return None
        nv, nm = (tv | rv), tm & rm
        nv &= ~nm
        chi = u32min ^ u32max
        if chi:
            d = (1 << chi.bit_length()) - 1
            rv, rm = u32min & ~d, d
        else:
            rv, rm = u32min, 0
        lv, lm = nv & M32, nm & M32
        if (lv ^ rv) & ~(lm | rm) & M32:
            return None
        lm2 = lm & rm
        lv2 = (lv | rv) & ~lm2
        nv = (nv & ~M32 & M64) | lv2
        nm = (nm & ~M32 & M64) | lm2
        if nv == tv and nm == tm:
            break
        tv, tm = nv, nm
    return Scalar((tv, tm), umin, umax, smin, smax, u32min, u32max, s32min, s32max)


_CONSTS: dict = {}


def const(v: int) -> Scalar:
    v &= M64
    c = _CONSTS.get(v)
    if c is None:
        s = sx64(v)
        lo = v & M32
        c = Scalar((v, 0), v, v, s, s, lo, lo, sx32(lo), sx32(lo))
        if len(_CONSTS) < 65536:
            _CONSTS[v] = c
    return c


_ZEXT: dict = {}
UNKNOWN = Scalar(T.UNKNOWN, 0, M64, S64MIN, S64MAX, 0, M32, S32MIN, S32MAX)
ZERO = const(0)
for _bits in (8, 16, 32):
    _ZEXT[(1 << _bits) - 1] = make(T.trange(0, (1 << _bits) - 1), 0, (1 << _bits) - 1, S64MIN, S64MAX, 0, M32,
                                   S32MIN, S32MAX)


def from_view(v, w: int) -> Scalar | None:
    """A Scalar from a width-w result view; 32-bit results are zero-extended to 64 bits."""
    t, umin, umax, smin, smax = v
    if w == 64:
        return make(t, umin, umax, smin, smax, 0, M32, S32MIN, S32MAX)
    t = T.low32(t)
    return make(t, umin, umax, umin, umax, umin, umax, smin, smax)


def unsigned_range(lo: int, hi: int) -> Scalar:
    if lo == 0 and hi in _ZEXT:
        return _ZEXT[hi]
    return make(T.trange(lo, hi), lo, hi, S64MIN, S64MAX, 0, M32, S32MIN, S32MAX) or UNKNOWN


def signed_range(lo: int, hi: int, w: int = 64) -> Scalar:
    if w == 64:
        return make(T.UNKNOWN, 0, M64, lo, hi, 0, M32, S32MIN, S32MAX) or UNKNOWN
    return from_view((T.trange(0, M32), 0, M32, lo, hi), 32) or UNKNOWN


def full(w: int):
    m, smin, smax = LIMITS[w]
    return ((0, m), 0, m, smin, smax)


# ------------------------------------------------------------------------------------ constant folding
def _sdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _smod(a, b):
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def fold(op: str, a: int, b: int, w: int) -> int:
    """The exact result of an ALU operation on width-w values (docs/semantics.md)."""
    m = LIMITS[w][0]
    a &= m
    b &= m
    sh = b & (w - 1)
    if op == "add":
        r = a + b
    elif op == "sub":
        r = a - b
    elif op == "mul":
        r = a * b
    elif op == "div":
        r = a // b if b else 0
    elif op == "mod":
        r = a % b if b else a
    elif op == "sdiv":
        r = _sdiv(sx(a, w), sx(b, w)) if b else 0
    elif op == "smod":
        r = _smod(sx(a, w), sx(b, w)) if b else a
    elif op == "or":
        r = a | b
    elif op == "and":
        r = a & b
    elif op == "xor":
        r = a ^ b
    elif op == "lsh":
        r = a << sh
    elif op == "rsh":
        r = a >> sh
    elif op == "arsh":
        r = sx(a, w) >> sh
    elif op == "neg":
        r = -a
    elif op == "mov":
        r = b
    else:
        raise KeyError(op)
    return r & m


# ------------------------------------------------------------------------------------ ALU transfer
def alu(op: str, a: Scalar, b: Scalar, w: int) -> Scalar:
    """dst = dst op src on width w (32-bit results zero-extended). Never None."""
    if op == "mov":
        return b if w == 64 else from_view(b.view(32), 32) or UNKNOWN
    va, vb = a.view(w), b.view(w)
    m, SMIN, SMAX = LIMITS[w]
    if va[0][1] == 0 and (vb[0][1] == 0 or op == "neg"):
        return const(fold(op, va[0][0], vb[0][0], w))
    fn = _ALU.get(op)
    r = fn(va, vb, w, m, SMIN, SMAX) if fn else None
    if r is None:
        r = full(w)
    return from_view(r, w) or from_view(full(w), w) or UNKNOWN


def _add(a, b, w, m, SMIN, SMAX):
    t = T.add(a[0], b[0])
    t = (t[0] & m, t[1] & m)
    umin, umax = (a[1] + b[1], a[2] + b[2]) if a[2] + b[2] <= m else (0, m)
    lo, hi = a[3] + b[3], a[4] + b[4]
    smin, smax = (lo, hi) if SMIN <= lo and hi <= SMAX else (SMIN, SMAX)
    return (t, umin, umax, smin, smax)


def _sub(a, b, w, m, SMIN, SMAX):
    t = T.sub(a[0], b[0])
    t = (t[0] & m, t[1] & m)
    umin, umax = (a[1] - b[2], a[2] - b[1]) if a[1] >= b[2] else (0, m)
    lo, hi = a[3] - b[4], a[4] - b[3]
    smin, smax = (lo, hi) if SMIN <= lo and hi <= SMAX else (SMIN, SMAX)
    return (t, umin, umax, smin, smax)


def _mul(a, b, w, m, SMIN, SMAX):
    t = T.mul(a[0], b[0])
    t = (t[0] & m, t[1] & m)
    umin, umax = (a[1] * b[1], a[2] * b[2]) if a[2] * b[2] <= m else (0, m)
    return (t, umin, umax, SMIN, SMAX)


def _and(a, b, w, m, SMIN, SMAX):
    t = T.and_(a[0], b[0])
    return (t, t[0], min(a[2], b[2]), SMIN, SMAX)


def _or(a, b, w, m, SMIN, SMAX):
    t = T.or_(a[0], b[0])
    return (t, max(a[1], b[1]), t[0] | t[1], SMIN, SMAX)


def _xor(a, b, w, m, SMIN, SMAX):
    t = T.xor(a[0], b[0])
    return (t, t[0], t[0] | t[1], SMIN, SMAX)


def _shift_amount(b, w):
    return b[0][0] & (w - 1) if b[0][1] == 0 else None


def _lsh(a, b, w, m, SMIN, SMAX):
    k = _shift_amount(b, w)
    if k is None:
        return None
    t = T.lshift(a[0], k, w)
    umin, umax = (a[1] << k, a[2] << k) if (a[2] << k) <= m else (0, m)
    return (t, umin, umax, SMIN, SMAX)


def _rsh(a, b, w, m, SMIN, SMAX):
    k = _shift_amount(b, w)
    if k is None:
        return ((0, m), 0, a[2], SMIN, SMAX)
    return (T.rshift(a[0], k), a[1] >> k, a[2] >> k, SMIN, SMAX)


def _arsh(a, b, w, m, SMIN, SMAX):
    k = _shift_amount(b, w)
    if k is None:
        return None
    return (T.arshift(a[0], k, w), 0, m, a[3] >> k, a[4] >> k)


def _div(a, b, w, m, SMIN, SMAX):
    if b[0][1] == 0:
        c = b[0][0]
        if c == 0:
            return ((0, 0), 0, 0, 0, 0)
        return (T.trange(a[1] // c, a[2] // c), a[1] // c, a[2] // c, SMIN, SMAX)
    return (T.trange(0, a[2]), 0, a[2], SMIN, SMAX)


def _mod(a, b, w, m, SMIN, SMAX):
    if b[0][1] == 0:
        c = b[0][0]
        if c == 0 or a[2] < c:
            return a
        return (T.trange(0, c - 1), 0, c - 1, SMIN, SMAX)
    return (T.trange(0, a[2]), 0, a[2], SMIN, SMAX)


_ALU = {"add": _add, "sub": _sub, "mul": _mul, "and": _and, "or": _or, "xor": _xor, "lsh": _lsh,
        "rsh": _rsh, "arsh": _arsh, "div": _div, "mod": _mod}


def truncate(a: Scalar, nbytes: int) -> Scalar:
    """The low nbytes of a, zero-extended (le16/le32, narrow loads of a spilled scalar)."""
    if nbytes == 8:
        return a
    m = (1 << (8 * nbytes)) - 1
    if a.is_const:
        return const(a.value & m)
    if a.umax <= m:
        return a
    return unsigned_range(0, m)


def sign_extend(a: Scalar, bits: int, w: int) -> Scalar:
    """movsx / ldxs: the low `bits` bits of a sign-extended to w bits (zero-extended to 64 when w=32)."""
    m = (1 << bits) - 1
    if a.is_const:
        v = a.value & m
        v = v - (1 << bits) if v >> (bits - 1) else v
        return const(v & LIMITS[w][0])
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.umax <= hi:
        return a if w == 64 else alu("mov", a, a, 32)
    return signed_range(lo, hi, w)


# ------------------------------------------------------------------------------------ branches
NEGATE = {"jeq": "jne", "jne": "jeq", "jgt": "jle", "jle": "jgt", "jge": "jlt", "jlt": "jge",
          "jsgt": "jsle", "jsle": "jsgt", "jsge": "jslt", "jslt": "jsge"}


def refine(op: str, a: Scalar, b: Scalar, w: int, taken: bool):
    """(a', b') under `a op b` being `taken` on width w, or None when that side is impossible."""
    if a.t[1] == 0 and b.t[1] == 0:
        return (a, b) if _decide(op, a.value, b.value, w) == taken else None
    if op == "jset":
        return _refine_jset(a, b, w, taken)
    if not taken:
        op = NEGATE[op]
    ta, aumin, aumax, asmin, asmax = a.view(w)
    tb, bumin, bumax, bsmin, bsmax = b.view(w)
    if op == "jeq":
        if T.conflicts(ta, tb):
            return None
        t = T.intersect(ta, tb)
        r = (t, max(aumin, bumin), min(aumax, bumax), max(asmin, bsmin), min(asmax, bsmax))
        na, nb = _apply(a, r, w), _apply(b, r, w)
        return None if na is None or nb is None else (na, nb)
    if op == "jne":
        if ta[1] == 0 and tb[1] == 0:
            return None if ta[0] == tb[0] else (a, b)
        if tb[1] == 0:
            na = _exclude(a, tb[0], w)
            return None if na is None else (na, b)
        if ta[1] == 0:
            nb = _exclude(b, ta[0], w)
            return None if nb is None else (a, nb)
        return (a, b)
    if op == "jgt":
        ra = (ta, max(aumin, bumin + 1), aumax, asmin, asmax)
        rb = (tb, bumin, min(bumax, aumax - 1), bsmin, bsmax)
    elif op == "jge":
        ra = (ta, max(aumin, bumin), aumax, asmin, asmax)
        rb = (tb, bumin, min(bumax, aumax), bsmin, bsmax)
    elif op == "jlt":
        ra = (ta, aumin, min(aumax, bumax - 1), asmin, asmax)
        rb = (tb, max(bumin, aumin + 1), bumax, bsmin, bsmax)
    elif op == "jle":
        ra = (ta, aumin, min(aumax, bumax), asmin, asmax)
        rb = (tb, max(bumin, aumin), bumax, bsmin, bsmax)
    elif op == "jsgt":
        ra = (ta, aumin, aumax, max(asmin, bsmin + 1), asmax)
        rb = (tb, bumin, bumax, bsmin, min(bsmax, asmax - 1))
    elif op == "jsge":
        ra = (ta, aumin, aumax, max(asmin, bsmin), asmax)
        rb = (tb, bumin, bumax, bsmin, min(bsmax, asmax))
    elif op == "jslt":
        ra = (ta, aumin, aumax, asmin, min(asmax, bsmax - 1))
        rb = (tb, bumin, bumax, max(bsmin, asmin + 1), bsmax)
    elif op == "jsle":
        ra = (ta, aumin, aumax, asmin, min(asmax, bsmax))
        rb = (tb, bumin, bumax, max(bsmin, asmin), bsmax)
    else:
        raise KeyError(op)
    na, nb = _apply(a, ra, w), _apply(b, rb, w)
    return None if na is None or nb is None else (na, nb)


_DECIDE = {
    "jeq": lambda x, y, xs, ys: x == y, "jne": lambda x, y, xs, ys: x != y,
    "jgt": lambda x, y, xs, ys: x > y, "jge": lambda x, y, xs, ys: x >= y,
    "jlt": lambda x, y, xs, ys: x < y, "jle": lambda x, y, xs, ys: x <= y,
    "jsgt": lambda x, y, xs, ys: xs > ys, "jsge": lambda x, y, xs, ys: xs >= ys,
    "jslt": lambda x, y, xs, ys: xs < ys, "jsle": lambda x, y, xs, ys: xs <= ys,
    "jset": lambda x, y, xs, ys: bool(x & y),
}


def _decide(op: str, x: int, y: int, w: int) -> bool:
    m = LIMITS[w][0]
    x &= m
    y &= m
    return _DECIDE[op](x, y, sx(x, w), sx(y, w))


def _apply(s: Scalar, r, w: int) -> Scalar | None:
    if r == s.view(w):
        return s
    t, umin, umax, smin, smax = r
    if w == 64:
        return make(t, umin, umax, smin, smax, s.u32min, s.u32max, s.s32min, s.s32max)
    return make(T.with_low32(s.t, t), s.umin, s.umax, s.smin, s.smax, umin, umax, smin, smax)


def _exclude(s: Scalar, c: int, w: int) -> Scalar | None:
    t, umin, umax, smin, smax = s.view(w)
    sc = sx(c, w)
    if umin == c:
        umin += 1
    if umax == c:
        umax -= 1
    if smin == sc:
        smin += 1
    if smax == sc:
        smax -= 1
    return _apply(s, (t, umin, umax, smin, smax), w)


def _refine_jset(a: Scalar, b: Scalar, w: int, taken: bool):
    ta = a.view(w)[0]
    tb = b.view(w)[0]
    if tb[1] != 0:
        if ta[1] == 0 and tb[1] == 0:
            pass
        return (a, b)
    k = tb[0]
    if taken:
        if ta[0] & k:
            return (a, b)
        if (ta[0] | ta[1]) & k == 0:
            return None
        if k & (k - 1) == 0:      # a single bit: it is set
            na = _apply(a, ((ta[0] | k, ta[1] & ~k), *a.view(w)[1:]), w)
            return None if na is None else (na, b)
        return (a, b)
    if ta[0] & k:
        return None
    na = _apply(a, ((ta[0] & ~k, ta[1] & ~k), *a.view(w)[1:]), w)
    return None if na is None else (na, b)
