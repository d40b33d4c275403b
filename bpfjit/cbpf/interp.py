"""Reference interpreter of classic BPF: runs a checked program over one packet, written directly from
the kernel's semantics (the old `sk_run_filter` / `__bpf_prog_run` of a converted filter), independent of
the converter, so that tests can check the conversion in both eBPF engines against it.

`run(prog, packet, nhoff=14, anc=None, cpu=0, random=None) -> int` (the u32 return value):
A, X and M[] are u32; packet loads are big-endian and out of bounds return 0 from the filter; LD IND
with a negative X + k returns 0; division/modulo by X = 0 returns 0; shifts by X use X & 31 (eBPF
semantics of the converted program); negative offsets and ancillary loads as documented in convert.py.
Nothing here converts programs.
"""
from __future__ import annotations

from .convert import ANC_DEFAULTS, abs_offset
from .opcodes import ANCILLARY, MEMWORDS, OPS, SKF_AD_OFF, to_s32

M32 = 0xFFFFFFFF


class _Return(Exception):
    def __init__(self, value):
        self.value = value


_ALU = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a // b, "mod": lambda a, b: a % b, "and": lambda a, b: a & b,
    "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b, "lsh": lambda a, b: a << (b & 31),
    "rsh": lambda a, b: a >> (b & 31),
}
_JMP = {"jeq": lambda a, b: a == b, "jgt": lambda a, b: a > b, "jge": lambda a, b: a >= b,
        "jset": lambda a, b: (a & b) != 0}


def _load(pkt: bytes, off: int | None, size: int) -> int:
    if off is None or off < 0 or off + size > len(pkt):
        raise _Return(0)
    return int.from_bytes(pkt[off:off + size], "big")


def _ancillary(name: str, pkt: bytes, A: int, X: int, anc: dict, cpu: int, random) -> int:
    if name == "protocol":
        return int.from_bytes(pkt[12:14], "big") if len(pkt) >= 14 else 0
    if name == "pkttype":
        if len(pkt) < 6 or not pkt[0] & 1:
            return 0
        return 1 if pkt[:6] == b"\xff" * 6 else 2
    if name == "cpu":
        return cpu
    if name == "random":
        return random() & M32 if random is not None else 0
    if name == "alu_xor_x":
        return A ^ X
    return anc[name] & M32


def run(prog, packet, *, nhoff: int = 14, anc: dict | None = None, cpu: int = 0, random=None) -> int:
    pkt = bytes(packet)
    anc_values = dict(ANC_DEFAULTS, **(anc or {}))
    A = X = 0
    M = [0] * MEMWORDS
    pc = 0
    try:
        while True:
            code, jt, jf, k = prog[pc]
            o = OPS[code]
            kind, op = o.kind, o.op
            pc += 1
            if kind == "alu":
                if op == "neg":
                    A = -A & M32
                    continue
                b = X if o.src == "x" else k
                if op in ("div", "mod") and b == 0:
                    return 0
                A = _ALU[op](A, b) & M32
            elif kind == "ld":
                if op == "abs":
                    s = to_s32(k)
                    if SKF_AD_OFF <= s < 0:
                        A = _ancillary(ANCILLARY[s - SKF_AD_OFF], pkt, A, X, anc_values, cpu, random)
                    else:
                        A = _load(pkt, abs_offset(k, nhoff), o.size)
                elif op == "ind":
                    A = _load(pkt, abs_offset((X + k) & M32, 14), o.size)
                elif op == "len":
                    A = len(pkt) & M32
                elif op == "imm":
                    A = k
                else:
                    A = M[k]
            elif kind == "ldx":
                if op == "len":
                    X = len(pkt) & M32
                elif op == "imm":
                    X = k
                elif op == "mem":
                    X = M[k]
                else:
                    X = (_load(pkt, abs_offset(k, nhoff), 1) & 0xF) << 2
            elif kind == "st":
                M[k] = A
            elif kind == "stx":
                M[k] = X
            elif kind == "misc":
                if op == "tax":
                    X = A
                else:
                    A = X
            elif kind == "ret":
                return A if op == "a" else k
            elif op == "ja":
                pc += k
            else:
                pc += jt if _JMP[op](A, X if o.src == "x" else k) else jf
    except _Return as r:
        return r.value
