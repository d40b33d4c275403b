"""Instruction text in the kernel verifier log's C-like syntax ("r0 = *(u32 *)(r1 +4)", "if r1 > 0x5 goto
pc+2", "call bpf_map_lookup_elem#1"), driven by `Form.op`. Only text: no checks here."""
from __future__ import annotations

from .. import isa

ALU_SYM = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "or": "|=", "and": "&=", "lsh": "<<=",
           "rsh": ">>=", "mod": "%=", "xor": "^=", "arsh": "s>>=", "mov": "=", "sdiv": "s/=", "smod": "s%="}
JMP_SYM = {"jeq": "==", "jgt": ">", "jge": ">=", "jset": "&", "jne": "!=", "jsgt": "s>", "jsge": "s>=",
           "jlt": "<", "jle": "<=", "jslt": "s<", "jsle": "s<="}
SIZE = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
ATOMIC_SYM = {"add": "+=", "or": "|=", "and": "&=", "xor": "^="}


def _off(o: int) -> str:
    return f"+{o}" if o >= 0 else str(o)


def text(program, pc: int, helpers=None) -> str:
    ins = program.insns[pc]
    f = program.forms[pc]
    op = f.op
    cls = f.cls
    d, s, off, imm = ins.dst, ins.src, ins.off, ins.imm
    if cls in (isa.CLS_ALU, isa.CLS_ALU64):
        p = "r" if f.is64 else "w"
        src = f"{p}{s}" if f.srcreg else (str(imm) if f.is64 else f"{imm & 0xFFFFFFFF:#x}" if imm < 0 else str(imm))
        if op == "neg":
            return f"{p}{d} = -{p}{d}"
        if op in ("le", "be", "bswap"):
            return f"r{d} = {op}{f.width} r{d}"
        if op.startswith("movsx"):
            return f"{p}{d} = (s{op[5:]}){p}{s}"
        return f"{p}{d} {ALU_SYM[op]} {src}"
    size = f.width // 8
    if op == "ldx":
        return f"r{d} = *({SIZE[size]} *)(r{s} {_off(off)})"
    if op == "ldxs":
        return f"r{d} = *(s{size * 8} *)(r{s} {_off(off)})"
    if op == "st":
        return f"*({SIZE[size]} *)(r{d} {_off(off)}) = {imm}"
    if op == "stx":
        return f"*({SIZE[size]} *)(r{d} {_off(off)}) = r{s}"
    if op.startswith("lock_"):
        name = op[5:]
        p = "r" if size == 8 else "w"
        mem = f"({SIZE[size]} *)(r{d} {_off(off)})"
        if name in ATOMIC_SYM:
            return f"lock *{mem} {ATOMIC_SYM[name]} {p}{s}"
        if name == "cmpxchg":
            return f"r0 = atomic{'64' if size == 8 else ''}_cmpxchg({mem}, r0, {p}{s})"
        return f"{p}{s} = atomic{'64' if size == 8 else ''}_{name}({mem}, {p}{s})"
    if op.startswith("lddw"):
        nxt = program.insns[pc + 1].imm
        if op == "lddw":
            return f"r{d} = {((imm & 0xFFFFFFFF) | ((nxt & 0xFFFFFFFF) << 32)):#x} ll"
        if op in ("lddw_map_fd", "lddw_map_idx"):
            return f"r{d} = map[{'id' if op == 'lddw_map_fd' else 'idx'}:{imm}]"
        if op in ("lddw_map_value", "lddw_map_idx_value"):
            return f"r{d} = map[{'id' if op == 'lddw_map_value' else 'idx'}:{imm}][0]+{nxt}"
        return f"r{d} = {op[5:]}[{imm}]"
    if op == "ldabs":
        return f"r0 = *({SIZE[size]} *)skb[{imm}]"
    if op == "ldind":
        return f"r0 = *({SIZE[size]} *)skb[r{s} + {imm}]"
    if op in JMP_SYM:
        p = "r" if f.is64 else "w"
        rhs = f"{p}{s}" if f.srcreg else f"{imm & 0xFFFFFFFFFFFFFFFF if imm >= 0 else imm:#x}"
        return f"if {p}{d} {JMP_SYM[op]} {rhs} goto pc{_off(off)}"
    if op == "ja":
        return f"goto pc{_off(off)}"
    if op == "ja32":
        return f"gotol pc{_off(imm)}"
    if op == "call":
        h = helpers.get(imm) if helpers is not None else None
        return f"call bpf_{h.name}#{imm}" if h else f"call unknown#{imm}"
    if op == "call_btf":
        return f"call btf#{imm}"
    if op == "call_local":
        return f"call pc{_off(imm)}"
    if op == "callx":
        return f"callx r{d}"
    if op == "exit":
        return "exit"
    return f.mnemonic
