"""Classic BPF -> eBPF, with the semantics of the kernel's `bpf_convert_filter`.

Register mapping (as in the kernel where it matters to the program's behaviour):
    A = r0, X = r7, the context (struct __sk_buff of a socket filter) = r6 (saved r1), the packet length =
    r8 (skb->len, read by `ld len`),
    r2/r3 temporaries, M[0..15] = 32-bit stack words at r10 - 64 + 4 * k.
A and X start at 0. Every ALU operation is 32-bit (ALU32), so A and X always hold zero-extended u32 values.
Packet loads use the eBPF legacy loads (ldabs / ldind, big-endian from the run's mem), which end the program
with r0 = 0 when the load is out of bounds, as the kernel does for a short packet. Division and modulo by
X = 0 return 0 from the program. Conditional jumps with a constant k >= 2^31 compare against k
zero-extended in r2 (eBPF immediates are sign-extended).

Negative LD ABS / LDX MSH offsets: SKF_LL_OFF + n reads byte n of the frame (the frame starts at the
link-layer header), SKF_NET_OFF + n reads byte `nhoff` + n (network header offset, 14 for Ethernet),
other negative offsets return 0. LD IND with a negative X + k is relative to the headers the same way (the
engines map it at run time, with the network header at 14). Ancillary loads (SKF_AD_OFF + n): see
`ANC_EMITTERS`; protocol and pkttype read the socket filter's context (skb->protocol, skb->pkt_type), other
metadata such as the mark or ifindex are constants given by `anc=` (defaults in ANC_DEFAULTS).
Checks are check.py's; nothing here runs programs.
"""
from __future__ import annotations

from ..errors import LoadError
from ..isa import Insn
from .opcodes import ANCILLARY, OPS, SKF_AD_OFF, SKF_LL_OFF, SKF_NET_OFF, SockFilter, to_s32

R_A, R_X, R_PKT, R_LEN, R_TMP, R_TMP2, R_FP = 0, 7, 6, 8, 2, 3, 10

# eBPF opcodes used here
ALU32, JMP = 0x04, 0x05
EK, EX = 0x00, 0x08
MOV32_K, MOV32_X, MOV64_X = 0xB4, 0xBC, 0xBF
LDXW, LDXH, LDXB, STXW = 0x61, 0x69, 0x71, 0x63
LDABS = {4: 0x20, 2: 0x28, 1: 0x30}
LDIND = {4: 0x40, 2: 0x48, 1: 0x50}
JA, EXIT, CALL, BE = 0x05, 0x95, 0x85, 0xDC
JOPS = {"jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50}
HELPER_PRANDOM, HELPER_CPU = 7, 8

# constant ancillary values (no sk_buff behind a run): override with load(..., anc={...})
ANC_DEFAULTS = {"ifindex": 0, "mark": 0, "queue": 0, "hatype": 1, "rxhash": 0, "vlan_tag": 0,
                "vlan_tag_present": 0, "vlan_tpid": 0}
UNSUPPORTED_ANC = ("nlattr", "nlattr_nest", "pay_offset")


def abs_offset(k: int, nhoff: int) -> int | None:
    """Packet offset a non-ancillary LD ABS / LDX MSH constant k (u32) reads, or None (the load fails)."""
    s = to_s32(k)
    if s >= 0:
        return s
    if s >= SKF_NET_OFF:
        return s - SKF_NET_OFF + nhoff
    if s >= SKF_LL_OFF:
        return s - SKF_LL_OFF
    return None


def mem_off(k: int) -> int:
    return -64 + 4 * k


class _Emitter:
    """eBPF instructions with symbolic jump targets, resolved by `finish`."""

    def __init__(self):
        self.out: list[list[int]] = []
        self.fix: list[tuple[int, object, int]] = []     # (index, label, cbpf pc for errors)
        self.labels: dict[object, int] = {}
        self.local = 0

    def ins(self, opcode, dst=0, src=0, off=0, imm=0):
        self.out.append([opcode, dst, src, off, imm])

    def jump(self, opcode, dst, label, pc, src=0, imm=0):
        self.fix.append((len(self.out), label, pc))
        self.ins(opcode, dst, src, 0, imm)

    def new_label(self):
        self.local += 1
        return ("local", self.local)

    def mark(self, label):
        self.labels[label] = len(self.out)

    def finish(self) -> list[Insn]:
        for idx, label, pc in self.fix:
            off = self.labels[label] - (idx + 1)
            if not -0x8000 <= off <= 0x7FFF:
                raise LoadError(f"jump too far for eBPF after conversion ({off} instructions)", pc)
            self.out[idx][3] = off
        return [Insn(*i) for i in self.out]


# ---- ancillary loads: name -> emitter(e, pc) leaving the value in A ----
SKB_LEN, SKB_PKT_TYPE, SKB_PROTOCOL = 0, 4, 16      # offsets in struct __sk_buff (progtypes.SK_BUFF_LAYOUT)


def _anc_protocol(e, pc, anc):
    """A = skb->protocol: the EtherType of the frame (0 for frames shorter than 14 bytes)."""
    e.ins(LDXH, R_A, R_PKT, SKB_PROTOCOL)
    e.ins(BE, R_A, imm=16)


def _anc_pkttype(e, pc, anc):
    """A = skb->pkt_type: PACKET_BROADCAST (1) / PACKET_MULTICAST (2) from the destination MAC, else
    PACKET_HOST (0)."""
    e.ins(LDXW, R_A, R_PKT, SKB_PKT_TYPE)


def _anc_call(helper):
    def emit(e, pc, anc):
        e.ins(CALL, imm=helper)
        e.ins(MOV32_X, R_A, R_A)                                  # u32 result
    return emit


def _anc_xor_x(e, pc, anc):
    e.ins(ALU32 | 0xA0 | EX, R_A, R_X)


def _anc_const(name):
    def emit(e, pc, anc):
        e.ins(MOV32_K, R_A, imm=to_s32(anc[name]))
    return emit


ANC_EMITTERS = {"protocol": _anc_protocol, "pkttype": _anc_pkttype, "cpu": _anc_call(HELPER_CPU),
                "random": _anc_call(HELPER_PRANDOM), "alu_xor_x": _anc_xor_x,
                **{name: _anc_const(name) for name in ANC_DEFAULTS}}


def _ret0(e):
    e.ins(MOV32_K, R_A)
    e.ins(EXIT)


def _cond_jump(e, pc, o, ins):
    """A <op> k|X: true -> pc+1+jt, false -> pc+1+jf."""
    t, f = ("pc", pc + 1 + ins.jt), ("pc", pc + 1 + ins.jf)
    op, src, imm = o.op, R_X, 0
    if o.src == "k":
        if to_s32(ins.k) < 0 and op != "jset":           # immediates are sign-extended: zero-extend via r2
            e.ins(MOV32_K, R_TMP, imm=to_s32(ins.k))
            src = R_TMP
        else:
            src, imm = None, to_s32(ins.k)
    mode = EK if src is None else EX
    if ins.jt == 0 and op == "jeq":                        # jump only when false
        e.jump(JMP | JOPS["jne"] | mode, R_A, f, pc, src=src or 0, imm=imm)
        return
    e.jump(JMP | JOPS[op] | mode, R_A, t, pc, src=src or 0, imm=imm)
    if ins.jf:
        e.jump(JA, 0, f, pc)


def convert(prog: list[SockFilter], *, nhoff: int = 14, anc: dict | None = None) -> list[Insn]:
    """eBPF instruction slots of a checked cBPF program (see the module docstring for the semantics)."""
    anc_values = dict(ANC_DEFAULTS, **(anc or {}))
    e = _Emitter()
    e.ins(MOV64_X, R_PKT, 1)
    e.ins(LDXW, R_LEN, 1, SKB_LEN)
    e.ins(MOV32_K, R_A)
    e.ins(MOV32_K, R_X)
    for pc, ins in enumerate(prog):
        e.mark(("pc", pc))
        o = OPS[ins.code]
        k, kind, op = ins.k, o.kind, o.op
        if kind == "alu":
            if op == "neg":
                e.ins(ALU32 | 0x80, R_A)
            elif o.src == "k":
                e.ins(ins.code & 0xF0 | ALU32 | EK, R_A, imm=to_s32(k))
            else:
                if op in ("div", "mod"):
                    skip = e.new_label()
                    e.jump(JMP | JOPS["jne"] | EK, R_X, skip, pc, imm=0)
                    _ret0(e)
                    e.mark(skip)
                e.ins(ins.code & 0xF0 | ALU32 | EX, R_A, R_X)
        elif kind == "ld":
            if op == "abs":
                s = to_s32(k)
                if SKF_AD_OFF <= s < 0:
                    name = ANCILLARY[s - SKF_AD_OFF]
                    if name in UNSUPPORTED_ANC:
                        raise LoadError(f"ancillary load SKF_AD_{name.upper()} is not supported", pc, "k")
                    ANC_EMITTERS[name](e, pc, anc_values)
                else:
                    off = abs_offset(k, nhoff)
                    if off is None:
                        _ret0(e)
                    else:
                        e.ins(LDABS[o.size], imm=off)
            elif op == "ind":
                e.ins(LDIND[o.size], 0, R_X, imm=to_s32(k))
            elif op == "len":
                e.ins(MOV32_X, R_A, R_LEN)
            elif op == "imm":
                e.ins(MOV32_K, R_A, imm=to_s32(k))
            else:
                e.ins(LDXW, R_A, R_FP, mem_off(k))
        elif kind == "ldx":
            if op == "len":
                e.ins(MOV32_X, R_X, R_LEN)
            elif op == "imm":
                e.ins(MOV32_K, R_X, imm=to_s32(k))
            elif op == "mem":
                e.ins(LDXW, R_X, R_FP, mem_off(k))
            else:                                          # msh: X = 4 * (P[k] & 0xf)
                off = abs_offset(k, nhoff)
                if off is None:
                    _ret0(e)
                else:
                    # A is kept in X across the load, as the kernel's converter does (LD ABS clobbers
                    # r1-r5; X is overwritten anyway)
                    e.ins(MOV64_X, R_X, R_A)
                    e.ins(LDABS[1], imm=off)
                    e.ins(ALU32 | 0x50 | EK, R_A, imm=0xF)
                    e.ins(ALU32 | 0x60 | EK, R_A, imm=2)
                    e.ins(MOV64_X, R_TMP2, R_X)
                    e.ins(MOV64_X, R_X, R_A)
                    e.ins(MOV64_X, R_A, R_TMP2)
        elif kind == "st":
            e.ins(STXW, R_FP, R_A, mem_off(k))
        elif kind == "stx":
            e.ins(STXW, R_FP, R_X, mem_off(k))
        elif kind == "misc":
            if op == "tax":
                e.ins(MOV32_X, R_X, R_A)
            else:
                e.ins(MOV32_X, R_A, R_X)
        elif kind == "ret":
            if op == "k":
                e.ins(MOV32_K, R_A, imm=to_s32(k))
            e.ins(EXIT)
        elif op == "ja":
            e.jump(JA, 0, ("pc", pc + 1 + k), pc)
        else:
            _cond_jump(e, pc, o, ins)
    return e.finish()

