"""The one BPF instruction-set table (RFC 9669) plus instruction decode/encode.

Every instruction form is one `Form` row: its opcode byte, which field selects it among forms sharing that
opcode (offset for sdiv/smod/movsx, imm for atomics and byte swaps, src for call/lddw), the constraints on
every other field, its conformance group, the CPU version that introduced it, and the assembler mnemonic.
The assembler, disassembler, loader, interpreter and JIT all read this table; none of them keeps its own
list of opcodes. Semantics do not live here: only names (`op`) that the engines map to behaviour.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

# ---- encoding constants (RFC 9669 section 3) ----
CLS_LD, CLS_LDX, CLS_ST, CLS_STX, CLS_ALU, CLS_JMP, CLS_JMP32, CLS_ALU64 = range(8)
SRC_K, SRC_X = 0x00, 0x08
SIZE_W, SIZE_H, SIZE_B, SIZE_DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {SIZE_W: 4, SIZE_H: 2, SIZE_B: 1, SIZE_DW: 8}
SIZE_SUFFIX = {1: "b", 2: "h", 4: "w", 8: "dw"}
MODE_IMM, MODE_ABS, MODE_IND, MODE_MEM, MODE_MEMSX, MODE_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

ALU_OPS = {  # name -> code (high nibble)
    "add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
    "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0, "mov": 0xB0, "arsh": 0xC0, "end": 0xD0,
}
JMP_OPS = {
    "ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50, "jsgt": 0x60,
    "jsge": 0x70, "call": 0x80, "exit": 0x90, "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0,
}
COND_JUMPS = ("jeq", "jgt", "jge", "jset", "jne", "jsgt", "jsge", "jlt", "jle", "jslt", "jsle")
ATOMIC_FETCH = 0x01
ATOMIC_OPS = {  # imm -> op name ("fetch" variants have bit 0 set)
    0x00: "add", 0x01: "fetch_add", 0x40: "or", 0x41: "fetch_or", 0x50: "and", 0x51: "fetch_and",
    0xA0: "xor", 0xA1: "fetch_xor", 0xE1: "xchg", 0xF1: "cmpxchg",
}

GROUPS = ("base32", "base64", "atomic32", "atomic64", "divmul32", "divmul64", "packet", "callx")
ALL_GROUPS = frozenset(GROUPS)
MAX_REG = 10
MAX_INSNS = 1_000_000

# lddw pseudo sources (src field of opcode 0x18)
LDDW_IMM64, LDDW_MAP_FD, LDDW_MAP_VALUE, LDDW_VAR_ADDR, LDDW_CODE_ADDR, LDDW_MAP_IDX, LDDW_MAP_IDX_VALUE = range(7)

# Field constraint vocabulary for Form.dst/src/off/imm:
#   "reg"  a register 0..10 that is read          "wreg" a register 0..9 that is written
#   "zero" must be 0                              "any"  any value
#   "sel"  this field selects the form (its value is Form.sel_value)
#   "width" imm in (16, 32, 64) is fixed by the form


@dataclass(frozen=True)
class Form:
    """One instruction form of the ISA."""
    opcode: int
    op: str             # semantic name the engines dispatch on (e.g. "add", "sdiv", "ldx", "lock_fetch_add")
    mnemonic: str       # assembler mnemonic (e.g. "add32", "ldxsw", "lock fetch add32")
    group: str
    cpu: int
    dst: str = "zero"
    src: str = "zero"
    off: str = "zero"
    imm: str = "zero"
    sel_field: str | None = None   # "off" | "imm" | "src" when several forms share the opcode
    sel_value: int = 0
    width: int = 64     # operand / access width in bits (ALU width, memory size, swap width)
    is64: bool = True   # ALU64/JMP vs ALU/JMP32
    srcreg: bool = False  # BPF_X source
    shape: str = ""     # operand shape for the assembler: see asm.py

    @property
    def cls(self) -> int:
        return self.opcode & 0x07


def _build() -> list[Form]:
    forms: list[Form] = []
    add = forms.append
    # ---- ALU / ALU64 ----
    for is64 in (False, True):
        cls = CLS_ALU64 if is64 else CLS_ALU
        sfx = "" if is64 else "32"
        base = "base64" if is64 else "base32"
        dm = "divmul64" if is64 else "divmul32"
        width = 64 if is64 else 32
        for name, code in ALU_OPS.items():
            if name in ("end",):
                continue
            if name == "neg":
                add(Form(cls | code, "neg", "neg" + sfx, base, 1, dst="wreg", width=width, is64=is64,
                         shape="r"))
                continue
            grp = dm if name in ("mul", "div", "mod") else base
            for srcreg in (False, True):
                opc = cls | code | (SRC_X if srcreg else SRC_K)
                common: dict[str, Any] = dict(dst="wreg", src="reg" if srcreg else "zero", imm="zero" if srcreg else "any",
                              width=width, is64=is64, srcreg=srcreg, shape="rr" if srcreg else "ri")
                if name in ("div", "mod"):
                    add(Form(opc, name, name + sfx, grp, 1, off="sel", sel_field="off", sel_value=0, **common))
                    add(Form(opc, "s" + name, "s" + name + sfx, grp, 4, off="sel", sel_field="off",
                             sel_value=1, **common))
                elif name == "mov":
                    add(Form(opc, "mov", "mov" + sfx, grp, 1, off="sel", sel_field="off", sel_value=0,
                             **common))
                    if srcreg:
                        for bits in ((8, 16, 32) if is64 else (8, 16)):
                            add(Form(opc, f"movsx{bits}", f"movsx{bits}{width}", grp, 4, off="sel",
                                     sel_field="off", sel_value=bits, **common))
                else:
                    add(Form(opc, name, name + sfx, grp, 1, off="zero", **common))
    # byte swaps: le/be in ALU class, bswap in ALU64 class (v4)
    for opc, op, cpu in ((CLS_ALU | 0xD0 | SRC_K, "le", 1), (CLS_ALU | 0xD0 | SRC_X, "be", 1),
                         (CLS_ALU64 | 0xD0 | SRC_K, "bswap", 4)):
        for bits in (16, 32, 64):
            add(Form(opc, op, f"{op}{bits}", "base64" if bits == 64 else "base32", cpu, dst="wreg",
                     imm="sel", sel_field="imm", sel_value=bits, width=bits, shape="r"))
    # ---- JMP / JMP32 ----
    add(Form(CLS_JMP | 0x00, "ja", "ja", "base32", 1, off="any", shape="o"))
    add(Form(CLS_JMP32 | 0x00, "ja32", "ja32", "base32", 4, imm="any", shape="j"))
    for is64 in (True, False):
        cls = CLS_JMP if is64 else CLS_JMP32
        sfx = "" if is64 else "32"
        for name in COND_JUMPS:
            code = JMP_OPS[name]
            cpu = 2 if name in ("jlt", "jle", "jslt", "jsle") else 1
            if not is64:
                cpu = 3
            grp = "base64" if is64 else "base32"
            add(Form(cls | code | SRC_K, name, name + sfx, grp, cpu, dst="reg", off="any", imm="any",
                     is64=is64, width=64 if is64 else 32, shape="rio"))
            add(Form(cls | code | SRC_X, name, name + sfx, grp, cpu, dst="reg", src="reg", off="any",
                     is64=is64, width=64 if is64 else 32, srcreg=True, shape="rro"))
    add(Form(CLS_JMP | 0x80, "call", "call", "base32", 1, src="sel", imm="any", sel_field="src", sel_value=0,
             shape="call"))
    add(Form(CLS_JMP | 0x80, "call_local", "call local", "base32", 1, src="sel", imm="any", sel_field="src",
             sel_value=1, shape="calllocal"))
    add(Form(CLS_JMP | 0x80, "call_btf", "call btf", "base32", 1, src="sel", imm="any", sel_field="src",
             sel_value=2, shape="call"))
    add(Form(CLS_JMP | 0x80 | SRC_X, "callx", "callx", "callx", 4, dst="reg", srcreg=True, shape="callx"))
    add(Form(CLS_JMP | 0x90, "exit", "exit", "base32", 1, shape=""))
    # ---- loads / stores ----
    for size_code, nbytes in SIZE_BYTES.items():
        s = SIZE_SUFFIX[nbytes]
        grp = "base64" if nbytes == 8 else "base32"
        add(Form(CLS_LDX | MODE_MEM | size_code, "ldx", "ldx" + s, grp, 1, dst="wreg", src="reg", off="any",
                 width=nbytes * 8, shape="rm"))
        add(Form(CLS_ST | MODE_MEM | size_code, "st", "st" + s, grp, 1, dst="reg", off="any", imm="any",
                 width=nbytes * 8, shape="mi"))
        add(Form(CLS_STX | MODE_MEM | size_code, "stx", "stx" + s, grp, 1, dst="reg", src="reg", off="any",
                 width=nbytes * 8, shape="mr"))
        if nbytes != 8:
            add(Form(CLS_LDX | MODE_MEMSX | size_code, "ldxs", "ldxs" + s, "base32", 4, dst="wreg", src="reg",
                     off="any", width=nbytes * 8, shape="rm"))
            add(Form(CLS_LD | MODE_ABS | size_code, "ldabs", "ldabs" + s, "packet", 1, imm="any",
                     width=nbytes * 8, shape="i"))
            add(Form(CLS_LD | MODE_IND | size_code, "ldind", "ldind" + s, "packet", 1, src="reg", imm="any",
                     width=nbytes * 8, shape="ri_ind"))
    for nbytes in (4, 8):
        opc = CLS_STX | MODE_ATOMIC | (SIZE_W if nbytes == 4 else SIZE_DW)
        grp = "atomic32" if nbytes == 4 else "atomic64"
        sfx = "32" if nbytes == 4 else ""
        for imm, name in ATOMIC_OPS.items():
            cpu = 1 if name == "add" else 3
            mnem = "lock " + name.replace("_", " ") + sfx
            add(Form(opc, "lock_" + name, mnem, grp, cpu, dst="reg", src="reg", off="any", imm="sel",
                     sel_field="imm", sel_value=imm, width=nbytes * 8, shape="mr"))
    add(Form(CLS_LD | MODE_IMM | SIZE_DW, "lddw", "lddw", "base64", 1, dst="wreg", src="sel", imm="any",
             sel_field="src", sel_value=LDDW_IMM64, shape="lddw"))
    for src, name in ((LDDW_MAP_FD, "map_fd"), (LDDW_MAP_VALUE, "map_value"), (LDDW_VAR_ADDR, "var_addr"),
                      (LDDW_CODE_ADDR, "code_addr"), (LDDW_MAP_IDX, "map_idx"),
                      (LDDW_MAP_IDX_VALUE, "map_idx_value")):
        add(Form(CLS_LD | MODE_IMM | SIZE_DW, "lddw_" + name, "lddw", "base64", 1, dst="wreg", src="sel",
                 imm="any", sel_field="src", sel_value=src, shape="lddw_" + name))
    return forms


FORMS: tuple[Form, ...] = tuple(_build())

# opcode -> list of forms sharing that opcode
BY_OPCODE: dict[int, tuple[Form, ...]] = {}
for _f in FORMS:
    BY_OPCODE.setdefault(_f.opcode, ())
    BY_OPCODE[_f.opcode] = BY_OPCODE[_f.opcode] + (_f,)
del _f

# assembler mnemonic -> forms (a mnemonic may name a register and an immediate form)
BY_MNEMONIC: dict[str, tuple[Form, ...]] = {}
for _f in FORMS:
    BY_MNEMONIC[_f.mnemonic] = BY_MNEMONIC.get(_f.mnemonic, ()) + (_f,)
del _f

LDDW_OPCODE = CLS_LD | MODE_IMM | SIZE_DW


class Insn(NamedTuple):
    """One 8-byte instruction slot, fields as signed values (off: s16, imm: s32)."""
    opcode: int
    dst: int
    src: int
    off: int
    imm: int


_INSN = struct.Struct("<BBhi")


def decode(data: bytes | bytearray | memoryview) -> list[Insn]:
    """Split little-endian bytecode into instruction slots. Length must be a multiple of 8."""
    if len(data) % 8:
        from .errors import LoadError
        raise LoadError(f"bytecode length {len(data)} is not a multiple of 8")
    out = []
    for opcode, regs, off, imm in _INSN.iter_unpack(bytes(data)):
        out.append(Insn(opcode, regs & 0x0F, regs >> 4, off, imm))
    return out


def encode(insns: Iterable[Insn]) -> bytes:
    """Pack instruction slots into little-endian bytecode."""
    return b"".join(_INSN.pack(i.opcode, (i.dst & 0x0F) | ((i.src & 0x0F) << 4), to_s16(i.off), to_s32(i.imm))
                    for i in insns)


def to_s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def form_of(insn: Insn) -> Form | None:
    """The form an instruction slot encodes, or None if the opcode/selector is unknown."""
    cands = BY_OPCODE.get(insn.opcode)
    if not cands:
        return None
    if len(cands) == 1 and cands[0].sel_field is None:
        return cands[0]
    for f in cands:
        v = {"off": insn.off, "imm": insn.imm, "src": insn.src}[f.sel_field or ""]
        if v == f.sel_value:
            return f
    return None


def lddw_slots(insns: Sequence[Insn]) -> set[int]:
    """Indexes of the second slots of lddw instructions."""
    second = set()
    i = 0
    while i < len(insns):
        if insns[i].opcode == LDDW_OPCODE:
            second.add(i + 1)
            i += 2
        else:
            i += 1
    return second


def markdown_table() -> str:
    """The ISA table as markdown (docs/isa.md embeds it; a test keeps the two equal)."""
    sel_names = {"off": "offset", "imm": "imm", "src": "src"}
    rows = ["| opcode | selector | mnemonic | op | group | CPU |", "|---|---|---|---|---|---|"]
    for f in sorted(FORMS, key=lambda f: (f.opcode, f.sel_field or "", f.sel_value)):
        sel = f"{sel_names[f.sel_field]}={f.sel_value:#x}" if f.sel_field else ""
        rows.append(f"| {f.opcode:#04x} | {sel} | `{f.mnemonic}` | {f.op} | {f.group} | v{f.cpu} |")
    return "\n".join(rows) + "\n"
