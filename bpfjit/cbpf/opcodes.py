"""The classic BPF (cBPF, `struct sock_filter`) instruction table and constants.

One row per opcode the Linux kernel accepts in a socket filter (`bpf_check_classic`): the 16-bit code, a
mnemonic, and what kind of instruction it is. The checker, the converter to eBPF, the reference interpreter
and the disassembler all read this table. Nothing here checks or runs programs.
"""
from __future__ import annotations

from typing import NamedTuple

# ---- code fields ----
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
SIZE_BYTES = {W: 4, H: 2, B: 1}
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
K, X = 0x00, 0x08
RVAL_A = 0x10
TAX, TXA = 0x00, 0x80

ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
           "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0}
JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40}

MEMWORDS = 16          # scratch memory M[0..15] (32-bit words)
MAXINSNS = 4096        # BPF_MAXINSNS

# ---- negative offsets of LD ABS / LD IND / LDX MSH (linux/filter.h) ----
SKF_AD_OFF = -0x1000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000

# ancillary loads: k - SKF_AD_OFF -> name
ANCILLARY = {0: "protocol", 4: "pkttype", 8: "ifindex", 12: "nlattr", 16: "nlattr_nest", 20: "mark",
             24: "queue", 28: "hatype", 32: "rxhash", 36: "cpu", 40: "alu_xor_x", 44: "vlan_tag",
             48: "vlan_tag_present", 52: "pay_offset", 56: "random", 60: "vlan_tpid"}
SKF_AD = {name: SKF_AD_OFF + off for off, name in ANCILLARY.items()}


class Op(NamedTuple):
    """One cBPF opcode: kind is ld/ldx/st/stx/alu/jmp/ret/misc; op the ALU/jump operation or load mode."""
    code: int
    mnemonic: str
    kind: str
    op: str            # alu/jmp: operation; ld/ldx: mode ("imm", "abs", "ind", "mem", "len", "msh"); ret: "k"/"a"
    size: int = 4      # bytes of a packet load
    src: str = "k"     # "k" or "x" (ALU/jumps)


def _build() -> dict[int, Op]:
    ops: list[Op] = []
    for name, c in ALU_OPS.items():
        if name == "neg":
            ops.append(Op(ALU | c, "neg", "alu", "neg"))
            continue
        ops.append(Op(ALU | c | K, name, "alu", name, src="k"))
        ops.append(Op(ALU | c | X, name, "alu", name, src="x"))
    for size, sfx in ((W, ""), (H, "h"), (B, "b")):
        ops.append(Op(LD | size | ABS, "ld" + sfx, "ld", "abs", SIZE_BYTES[size]))
        ops.append(Op(LD | size | IND, "ld" + sfx, "ld", "ind", SIZE_BYTES[size]))
    ops += [Op(LD | W | LEN, "ld", "ld", "len"), Op(LD | IMM, "ld", "ld", "imm"), Op(LD | MEM, "ld", "ld", "mem"),
            Op(LDX | W | LEN, "ldx", "ldx", "len"), Op(LDX | B | MSH, "ldxb", "ldx", "msh", 1),
            Op(LDX | IMM, "ldx", "ldx", "imm"), Op(LDX | MEM, "ldx", "ldx", "mem"),
            Op(ST, "st", "st", "mem"), Op(STX, "stx", "stx", "mem"),
            Op(MISC | TAX, "tax", "misc", "tax"), Op(MISC | TXA, "txa", "misc", "txa"),
            Op(RET | K, "ret", "ret", "k"), Op(RET | RVAL_A, "ret", "ret", "a"),
            Op(JMP | JMP_OPS["ja"], "ja", "jmp", "ja")]
    for name in ("jeq", "jgt", "jge", "jset"):
        ops.append(Op(JMP | JMP_OPS[name] | K, name, "jmp", name, src="k"))
        ops.append(Op(JMP | JMP_OPS[name] | X, name, "jmp", name, src="x"))
    return {o.code: o for o in ops}


OPS: dict[int, Op] = _build()


class SockFilter(NamedTuple):
    """struct sock_filter: code (u16), jt (u8), jf (u8), k (u32)."""
    code: int
    jt: int
    jf: int
    k: int


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def disassemble(insns) -> str:
    """tcpdump -d style listing of a (validated) program."""
    lines = []
    for pc, (code, jt, jf, k) in enumerate(insns):
        o = OPS.get(code)
        if o is None:
            text = f".word {code:#06x} {jt} {jf} {k:#x}"
        elif o.kind == "jmp":
            if o.op == "ja":
                text = f"ja {pc + 1 + k}"
            else:
                arg = "x" if o.src == "x" else f"#{k:#x}"
                text = f"{o.op} {arg} jt {pc + 1 + jt} jf {pc + 1 + jf}"
        elif o.kind == "alu":
            text = "neg" if o.op == "neg" else f"{o.op} {'x' if o.src == 'x' else f'#{k:#x}'}"
        elif o.kind in ("ld", "ldx"):
            arg = {"imm": f"#{k:#x}", "abs": f"[{k}]", "ind": f"[x + {k}]", "mem": f"M[{k}]", "len": "#pktlen",
                   "msh": f"4*([{k}]&0xf)"}[o.op]
            text = f"{o.mnemonic} {arg}"
        elif o.kind in ("st", "stx"):
            text = f"{o.mnemonic} M[{k}]"
        elif o.kind == "ret":
            text = "ret a" if o.op == "a" else f"ret #{k}"
        else:
            text = o.mnemonic
        lines.append(f"({pc:03d}) {text}")
    return "\n".join(lines)
