"""Load-time validation of classic BPF programs, with the rules of the kernel's `bpf_check_classic`.

`check(insns)` returns the program as a list of `SockFilter` or raises `LoadError(pc, field)`:
  - 1..4096 instructions, each a 4-tuple of in-range integers (code u16, jt/jf u8, k u32);
  - every code one the kernel accepts (opcodes.OPS, exact codes: no stray size/mode bits);
  - division / modulo by a constant 0, shifts by a constant >= 32;
  - scratch memory index k < 16 for LD/LDX MEM, ST, STX;
  - jumps forward and inside the program (JA by k, conditional jumps by jt/jf);
  - unknown ancillary loads (LD ABS with k in [SKF_AD_OFF, 0));
  - the last instruction is a RET;
  - every scratch word is stored on every path before it is loaded (`check_load_and_stores`).
Nothing here converts or runs programs.
"""
from __future__ import annotations

from ..errors import LoadError
from .opcodes import ANCILLARY, MAXINSNS, MEMWORDS, OPS, SKF_AD_OFF, SockFilter, to_s32

_LIMITS = (("code", 0xFFFF), ("jt", 0xFF), ("jf", 0xFF), ("k", 0xFFFFFFFF))


def _as_filter(pc: int, ins) -> SockFilter:
    try:
        fields = tuple(ins)
    except TypeError:
        raise LoadError(f"instruction must be a (code, jt, jf, k) tuple, not {type(ins).__name__}", pc) from None
    if len(fields) != 4:
        raise LoadError(f"instruction must have 4 fields (code, jt, jf, k), has {len(fields)}", pc)
    for (name, hi), v in zip(_LIMITS, fields):
        if not isinstance(v, int) or isinstance(v, bool):
            raise LoadError(f"{name} must be an integer, not {type(v).__name__}", pc, name)
        if name == "k" and -(1 << 31) <= v < 0:      # accept signed k (SKF_* offsets) as its u32 value
            v &= 0xFFFFFFFF
        if not 0 <= v <= hi:
            raise LoadError(f"{name} {v} out of range 0..{hi:#x}", pc, name)
    code, jt, jf, k = fields
    return SockFilter(code, jt, jf, k & 0xFFFFFFFF)


def check(insns) -> list[SockFilter]:
    if isinstance(insns, (str, bytes)) or not hasattr(insns, "__iter__"):
        raise LoadError(f"a classic BPF program is a sequence of (code, jt, jf, k), not {type(insns).__name__}")
    prog = [_as_filter(pc, ins) for pc, ins in enumerate(insns)]
    n = len(prog)
    if n == 0:
        raise LoadError("empty classic BPF program")
    if n > MAXINSNS:
        raise LoadError(f"classic BPF program has {n} instructions, more than {MAXINSNS}")
    for pc, ins in enumerate(prog):
        o = OPS.get(ins.code)
        if o is None:
            raise LoadError(f"unknown classic BPF opcode {ins.code:#06x}", pc, "code")
        if o.kind == "alu" and o.src == "k":
            if o.op in ("div", "mod") and ins.k == 0:
                raise LoadError(f"{o.op} by constant 0", pc, "k")
            if o.op in ("lsh", "rsh") and ins.k >= 32:
                raise LoadError(f"{o.op} by constant {ins.k} (must be < 32)", pc, "k")
        if o.op == "mem" and ins.k >= MEMWORDS:
            raise LoadError(f"scratch memory index {ins.k} out of range 0..{MEMWORDS - 1}", pc, "k")
        if o.kind == "jmp":
            if o.op == "ja":
                if ins.k >= n - pc - 1:
                    raise LoadError(f"ja +{ins.k} jumps outside the program ({n} instructions)", pc, "k")
            else:
                for fld in ("jt", "jf"):
                    if pc + getattr(ins, fld) + 1 >= n:
                        raise LoadError(f"{o.mnemonic} {fld} +{getattr(ins, fld)} jumps outside the program "
                                        f"({n} instructions)", pc, fld)
        if o.kind == "ld" and o.op == "abs":
            k = to_s32(ins.k)
            if SKF_AD_OFF <= k < 0 and (k - SKF_AD_OFF) not in ANCILLARY:
                raise LoadError(f"unknown ancillary load SKF_AD_OFF{k - SKF_AD_OFF:+d}", pc, "k")
    if OPS[prog[-1].code].kind != "ret":
        raise LoadError("the last instruction must be a ret", n - 1, "code")
    _check_load_and_stores(prog)
    return prog


def _check_load_and_stores(prog: list[SockFilter]) -> None:
    """Every M[k] load must follow a store to M[k] on every path (forward jumps only: one pass)."""
    full = (1 << MEMWORDS) - 1
    masks = [full] * len(prog)
    valid = 0
    for pc, ins in enumerate(prog):
        valid &= masks[pc]
        o = OPS[ins.code]
        if o.kind in ("st", "stx"):
            valid |= 1 << ins.k
        elif o.op == "mem":
            if not valid >> ins.k & 1:
                raise LoadError(f"M[{ins.k}] is loaded before it is stored on some path", pc, "k")
        elif o.kind == "jmp":
            targets = (ins.k,) if o.op == "ja" else (ins.jt, ins.jf)
            for t in targets:
                masks[pc + 1 + t] &= valid
            valid = full
