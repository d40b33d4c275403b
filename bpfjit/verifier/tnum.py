"""Tristate numbers (the kernel's tnum): a 64-bit value whose bits are each known 0, known 1 or unknown.

A tnum is a plain tuple `(value, mask)`: bits set in `mask` are unknown, the others equal `value`'s bits
(`value & mask == 0`). Only the arithmetic on them lives here; ranges are in scalar.py.
"""
from __future__ import annotations

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
UNKNOWN = (0, M64)
ZERO = (0, 0)


def const(v: int) -> tuple[int, int]:
    return (v & M64, 0)


def trange(lo: int, hi: int) -> tuple[int, int]:
    """The tightest tnum holding every unsigned value in lo..hi."""
    chi = lo ^ hi
    if chi == 0:
        return (lo, 0)
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return (lo & ~delta & M64, delta)


def add(a, b):
    sm = (a[1] + b[1]) & M64
    sv = (a[0] + b[0]) & M64
    sigma = (sm + sv) & M64
    chi = sigma ^ sv
    mu = chi | a[1] | b[1]
    return (sv & ~mu & M64, mu)


def sub(a, b):
    dv = (a[0] - b[0]) & M64
    alpha = (dv + a[1]) & M64
    beta = (dv - b[1]) & M64
    chi = alpha ^ beta
    mu = chi | a[1] | b[1]
    return (dv & ~mu & M64, mu)


def and_(a, b):
    alpha = a[0] | a[1]
    beta = b[0] | b[1]
    v = a[0] & b[0]
    return (v, alpha & beta & ~v & M64)


def or_(a, b):
    v = a[0] | b[0]
    mu = a[1] | b[1]
    return (v, mu & ~v & M64)


def xor(a, b):
    v = a[0] ^ b[0]
    mu = a[1] | b[1]
    return (v & ~mu & M64, mu)


def mul(a, b):
    """Shift-and-add over the bits of a (the kernel's tnum_mul)."""
    acc_v = (a[0] * b[0]) & M64
    acc_m = ZERO
    av, am = a
    bv, bm = b
    while av or am:
        if av & 1:
            acc_m = add(acc_m, (0, bm))
        elif am & 1:
            acc_m = add(acc_m, (0, (bv | bm) & M64))
        av >>= 1
        am >>= 1
        bv = (bv << 1) & M64
        bm = (bm << 1) & M64
    return add((acc_v, 0), acc_m)


def lshift(a, k: int, width: int = 64):
    m = (1 << width) - 1
    return ((a[0] << k) & m, (a[1] << k) & m)


def rshift(a, k: int):
    return (a[0] >> k, a[1] >> k)


def arshift(a, k: int, width: int = 64):
    """Arithmetic shift right within `width` bits (the sign bit's knowledge is replicated)."""
    m = (1 << width) - 1
    sign = 1 << (width - 1)
    v, mk = a[0] & m, a[1] & m
    sv = v - (1 << width) if v & sign else v
    sm = mk - (1 << width) if mk & sign else mk
    return ((sv >> k) & m, (sm >> k) & m)


def intersect(a, b):
    v = a[0] | b[0]
    mu = a[1] & b[1]
    return (v & ~mu & M64, mu)


def contains(a, b) -> bool:
    """Whether every value of b is a value of a (tnum_in)."""
    if b[1] & ~a[1] & M64:
        return False
    return a[0] == (b[0] & ~a[1] & M64)


def conflicts(a, b) -> bool:
    """a and b share no value (known bits disagree)."""
    known = ~(a[1] | b[1]) & M64
    return ((a[0] ^ b[0]) & known) != 0


def low32(a):
    return (a[0] & M32, a[1] & M32)


def with_low32(a, lo):
    """a with its low 32 bits replaced by the tnum lo."""
    return ((a[0] & ~M32 & M64) | lo[0], (a[1] & ~M32 & M64) | lo[1])


def is_const(a) -> bool:
    return a[1] == 0


def fmt(a) -> str:
    return f"({a[0]:#x}; {a[1]:#x})"
