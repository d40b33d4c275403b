"""Assembler and disassembler for the bpf_conformance / ubpf assembly syntax (documented in docs/assembly.md).

Both directions are driven by the ISA table (`isa.BY_MNEMONIC`, `isa.form_of`): a mnemonic names one or more
forms; the form's `shape` says which operands it takes (`_SHAPES`), and each operand kind (`_KINDS`) knows
its token class, the instruction fields it fills, how to parse it and how to print it. A mnemonic naming
several forms (`add` imm/reg, `call` helper/callx, `lddw` plain/pseudo sources) is resolved by the classes
of the operands written. Selector fields (`Form.sel_field`) are filled from the form, never written.

Syntax: one instruction per line; `#` starts a comment anywhere; `name:` defines a label (alone or before an
instruction); registers `%r0`..`%r10` (or `r0`..`r10`); numbers are decimal or `0x` hex with optional sign;
memory operands `[%rN]`, `[%rN+off]`, `[%rN-off]`. Jump and local-call targets are a label or a number of
slots relative to the next slot (`+N`/`-N`); the label `exit` means the first `exit` unless defined.
`call N` / `call NAME` (helper; names from `helpers` - a HelperRegistry or a mapping name -> id - else the
default helper registry; the disassembler prints names only when given `helpers`), `call local T`,
`call btf N`, `call %rN` (callx). `lddw %rN, VALUE` takes any 64-bit value; the pseudo sources are written
as functions: `map_fd(fd)`, `map_value_fd(fd, off)`, `var_addr(id)`, `code_addr(T)`, `map_idx(i)`,
`map_value_idx(i, off)`, and `map(NAME)` / `map_value(NAME, off)` resolved through `maps` (src 5 / 6). The
optional second argument is the imm of the second slot. `code_addr` targets are relative to the slot after
the lddw's first slot, as in the kernel. Aliases: `swap16/32/64` = `bswap16/32/64`.

The assembler checks encoding ranges only (imm32, off16, registers r0..r10); load-time validation belongs
to `Program`. The disassembler prints one instruction per line with numeric jump targets; its output
reassembles to identical slots for every slot the ISA table describes. Slots it cannot express (unknown
opcode, non-zero reserved field, truncated lddw) are printed as `# invalid: ...` comment lines, so only
valid programs round-trip.
"""
from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple, Sequence, Union

from . import isa
from .errors import AssemblerError
from .isa import Form, Insn, to_s16, to_s32

if TYPE_CHECKING:
    from .helpers.registry import HelperRegistry
    from .program import Program

_NUM = re.compile(r"([+-]?)(0x[0-9a-f]+|[0-9]+)", re.I)
_REG = re.compile(r"%?r(\d+)")
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*")
_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*:")
_MEM = re.compile(r"\[\s*([^\]+\-\s]+)\s*(?:([+-])\s*([^\]\s]+))?\s*\]")
_FUNC = re.compile(r"([A-Za-z_]\w*)\s*\((.*)\)", re.S)
_COMMA = re.compile(r",(?![^\[(]*[\])])")   # operand separators: commas outside [...] and (...)

S16 = (-(1 << 15), (1 << 15) - 1)
S32 = (-(1 << 31), (1 << 31) - 1)


# ---------------------------------------------------------------------------------------------- numbers
def _check(value: int, lo: int, hi: int, what: str) -> int:
    if not lo <= value <= hi:
        raise AssemblerError(f"{what} {value} out of range ({lo}..{hi})")
    return value


def _ranged(tok: str, what: str, lo: int, hi: int, hex_hi: int | None = None) -> int:
    """Parse a number; hex literals may go up to `hex_hi` (their unsigned reading)."""
    m = _NUM.fullmatch(tok.strip())
    if not m:
        raise AssemblerError(f"Invalid {what.lower()} {tok!r}")
    sign, digits = m.groups()
    is_hex = digits[:2].lower() == "0x"
    value = int(digits, 16 if is_hex else 10) * (-1 if sign == "-" else 1)
    return _check(value, lo, hex_hi if is_hex and hex_hi is not None else hi, what)


def _imm32(tok: str) -> int:
    return to_s32(_ranged(tok, "Immediate", *S32, hex_hi=0xFFFFFFFF))


def _imm64(tok: str) -> tuple[int, int]:
    value = _ranged(tok, "lddw value", -(1 << 63), (1 << 64) - 1)
    return to_s32(value), to_s32(value >> 32)


def _reg(tok: str) -> int:
    m = _REG.fullmatch(tok.strip())
    if not m or int(m[1]) > isa.MAX_REG:
        raise AssemblerError(f"Invalid register {tok!r}")
    return int(m[1])


def _mem(tok: str) -> tuple[int, int]:
    m = _MEM.fullmatch(tok.strip())
    if not m:
        raise AssemblerError(f"Invalid memory operand {tok!r} (expected [%rN], [%rN+off] or [%rN-off])")
    reg, sign, off = m.groups()
    return _reg(reg), (_ranged(sign + off, "Offset", *S16) if sign else 0)


# ------------------------------------------------------------------------------- lddw pseudo sources
# function syntax -> (src field, how its first argument is read); the first name per src is printed
_LDDW_FUNCS = {
    "map_fd": (isa.LDDW_MAP_FD, "imm"), "map_value_fd": (isa.LDDW_MAP_VALUE, "imm"),
    "var_addr": (isa.LDDW_VAR_ADDR, "imm"), "code_addr": (isa.LDDW_CODE_ADDR, "target"),
    "map_idx": (isa.LDDW_MAP_IDX, "imm"), "map_value_idx": (isa.LDDW_MAP_IDX_VALUE, "imm"),
    "map": (isa.LDDW_MAP_IDX, "map"), "map_value": (isa.LDDW_MAP_IDX_VALUE, "map"),
}
_PSEUDO_NAME: dict[int, str] = {}
for _name, (_src, _) in _LDDW_FUNCS.items():
    _PSEUDO_NAME.setdefault(_src, _name)


@dataclass
class _Ctx:
    """What operand parsing needs beyond the token: labels, helper and map names."""
    labels: dict[str, int]
    helpers: Mapping[str, int] | None
    maps: dict[str, int]
    default_helpers: bool = False     # `helpers` is the default registry (nothing was passed)

    def target(self, tok: str, pc: int, bits: int) -> int:
        lo, hi = -(1 << bits - 1), (1 << bits - 1) - 1
        if not _IDENT.fullmatch(tok):
            return _ranged(tok, "Jump offset", lo, hi)
        if tok not in self.labels:
            raise AssemblerError(f"Undefined label {tok!r}")
        return _check(self.labels[tok] - pc - 1, lo, hi, f"Jump offset to {tok!r}")

    def helper(self, tok: str) -> int:
        if not _IDENT.fullmatch(tok):
            return _imm32(tok)
        names = self.helpers
        if names is None:
            from .helpers.defaults import helper_ids
            names = self.helpers = helper_ids()
        if tok not in names:
            raise AssemblerError(_unknown_helper(tok, names, self.default_helpers))
        return _check(names[tok], *S32, f"Helper id of {tok!r}")

    def map_index(self, tok: str) -> int:
        if not _IDENT.fullmatch(tok):
            return _imm32(tok)
        if tok not in self.maps:
            raise AssemblerError(f"Unknown map {tok!r}")
        return _check(self.maps[tok], 0, S32[1], f"Map index of {tok!r}")

    def pseudo(self, tok: str, pc: int) -> tuple[int, int]:
        m = _FUNC.fullmatch(tok)
        if m is None:
            raise AssemblerError(f"Invalid lddw value {tok!r}")
        name, text = m.groups()
        args = [a.strip() for a in text.split(",")]
        if len(args) > 2 or "" in args:
            raise AssemblerError(f"{name}() takes 1 or 2 arguments, got {tok!r}")
        read = {"imm": _imm32, "map": self.map_index, "target": lambda t: self.target(t, pc, 32)}
        first = read[_LDDW_FUNCS[name][1]](args[0])
        return first, (_imm32(args[1]) if len(args) == 2 else 0)


# ------------------------------------------------------------------------------------- helper names
HelperNames = Union["HelperRegistry", Mapping[str, int]]


def _helper_names(helpers: HelperNames | None) -> Mapping[str, int] | None:
    """name -> id from a HelperRegistry (anything with `names()`) or a mapping; None = the default registry."""
    if helpers is None or isinstance(helpers, Mapping):
        return helpers
    names = getattr(helpers, "names", None)
    if names is None:
        raise TypeError(f"helpers must be a HelperRegistry or a mapping name -> id, not {type(helpers).__name__}")
    return dict(names())


def _unknown_helper(name: str, names: Mapping[str, int], default: bool) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = "registered (default registry)" if default else "registered in helpers="
    listed = ", ".join(sorted(names)) or "none"
    advice = ("; pass helpers=your_registry to assemble with the names of your own helpers" if default
              else "; register it in that registry, or write its id: call N")
    return f"Unknown helper {name!r}{hint}; {where}: {listed}{advice}"


def _show_pseudo(ins: Insn, nxt: Insn | None) -> str:
    assert nxt is not None                       # _expressible: an lddw is printed only when complete
    name = _PSEUDO_NAME[ins.src]
    args = [f"{ins.imm:+d}" if _LDDW_FUNCS[name][1] == "target" else str(ins.imm)]
    if nxt.imm or "value" in name:
        args.append(str(nxt.imm))
    return f"{name}({', '.join(args)})"


# ----------------------------------------------------------------------------------- operand kinds
def _show_mem(reg: int, off: int) -> str:
    return f"[%r{reg}{off:+d}]" if off else f"[%r{reg}]"


def _second(nxt: Insn | None) -> Insn:
    """The second slot of an lddw (the disassembler prints an lddw only when it has one)."""
    assert nxt is not None
    return nxt


class _Kind(NamedTuple):
    cls: str          # token class the operand must have: reg, mem, value or func:<lddw src>
    fields: tuple     # Insn fields it fills ("next": imm of the lddw second slot)
    parse: Callable[[str, _Ctx, int], tuple]
    show: Callable[[Insn, Insn | None], str]


_KINDS = {
    "dst": _Kind("reg", ("dst",), lambda t, c, pc: (_reg(t),), lambda i, n: f"%r{i.dst}"),
    "src": _Kind("reg", ("src",), lambda t, c, pc: (_reg(t),), lambda i, n: f"%r{i.src}"),
    "imm": _Kind("value", ("imm",), lambda t, c, pc: (_imm32(t),), lambda i, n: str(i.imm)),
    "mdst": _Kind("mem", ("dst", "off"), lambda t, c, pc: _mem(t), lambda i, n: _show_mem(i.dst, i.off)),
    "msrc": _Kind("mem", ("src", "off"), lambda t, c, pc: _mem(t), lambda i, n: _show_mem(i.src, i.off)),
    "off": _Kind("value", ("off",), lambda t, c, pc: (c.target(t, pc, 16),), lambda i, n: f"{i.off:+d}"),
    "rel": _Kind("value", ("imm",), lambda t, c, pc: (c.target(t, pc, 32),), lambda i, n: f"{i.imm:+d}"),
    "helper": _Kind("value", ("imm",), lambda t, c, pc: (c.helper(t),), lambda i, n: str(i.imm)),
    "imm64": _Kind("value", ("imm", "next"), lambda t, c, pc: _imm64(t),
                   lambda i, n: f"{(i.imm & 0xFFFFFFFF) | (_second(n).imm & 0xFFFFFFFF) << 32:#x}"),
    "pseudo": _Kind("func:{sel}", ("imm", "next"), lambda t, c, pc: c.pseudo(t, pc), _show_pseudo),
}

# Form.shape -> operand kinds, in written order
_SHAPES = {
    "": (), "r": ("dst",), "ri": ("dst", "imm"), "rr": ("dst", "src"), "o": ("off",), "j": ("rel",),
    "rio": ("dst", "imm", "off"), "rro": ("dst", "src", "off"), "call": ("helper",), "calllocal": ("rel",),
    "callx": ("dst",), "rm": ("dst", "msrc"), "mi": ("mdst", "imm"), "mr": ("mdst", "src"), "i": ("imm",),
    "ri_ind": ("src", "imm"), "lddw": ("dst", "imm64"),
}
_SHAPES.update({f.shape: ("dst", "pseudo") for f in isa.FORMS if f.shape.startswith("lddw_")})


def _kinds(form: Form) -> tuple[str, ...]:
    return _SHAPES[form.shape]


# mnemonic -> candidate forms: the ISA table plus aliases (`call %rN` is callx)
_MNEMONICS: dict[str, tuple[Form, ...]] = dict(isa.BY_MNEMONIC)
_MNEMONICS.update({f"swap{w}": isa.BY_MNEMONIC[f"bswap{w}"] for w in (16, 32, 64)})
_MNEMONICS["call"] = isa.BY_MNEMONIC["call"] + isa.BY_MNEMONIC["callx"]
_PREFIXES = {" ".join(m.split()[:n]) for m in _MNEMONICS for n in range(1, len(m.split()))}


# --------------------------------------------------------------------------------------- assembler
def _class(tok: str) -> str:
    if tok.startswith("["):
        return "mem"
    if tok.startswith("%") or _REG.fullmatch(tok):
        return "reg"
    m = _FUNC.fullmatch(tok)
    return f"func:{_LDDW_FUNCS.get(m[1], (None,))[0]}" if m else "value"


def _choose(name: str, cands: tuple[Form, ...], ops: list[str]) -> Form:
    """The candidate whose operand kinds match the written operands."""
    sized = [f for f in cands if len(_kinds(f)) == len(ops)]
    if not sized:
        want = " or ".join(sorted({str(len(_kinds(f))) for f in cands}))
        raise AssemblerError(f"Invalid number of operands for {name}: expected {want}, got {len(ops)}")
    classes = [_class(t) for t in ops]
    for f in sized:
        if all(_KINDS[k].cls.format(sel=f.sel_value) == c for k, c in zip(_kinds(f), classes)):
            return f
    return sized[0]  # nothing fits: encoding it reports the offending operand


def _operands(rest: str) -> list[str]:
    if not rest.strip():
        return []
    ops = [t.strip() for t in _COMMA.split(rest)]
    if "" in ops:
        raise AssemblerError("Empty operand")
    return ops


def _statement(body: str) -> tuple[Form, list[str]]:
    """Split one instruction into its form and operand tokens (the longest known mnemonic wins)."""
    words = list(re.finditer(r"\S+", body))
    for n in (3, 2, 1):
        name = " ".join(w[0] for w in words[:n]).lower()
        if n <= len(words) and name in _MNEMONICS:
            ops = _operands(body[words[n - 1].end():])
            return _choose(name, _MNEMONICS[name], ops), ops
    text = " ".join(w[0] for w in words).lower()
    if text in _PREFIXES:
        raise AssemblerError(f"Invalid number of operands for {text}")
    shown = words[:2] if words[0][0].lower() in _PREFIXES else words[:1]
    raise AssemblerError(f"Unknown mnemonic {' '.join(w[0] for w in shown)!r}")


def _encode(form: Form, ops: list[str], ctx: _Ctx, pc: int) -> list[Insn]:
    fields = dict(dst=0, src=0, off=0, imm=0, next=0)
    if form.sel_field:
        fields[form.sel_field] = form.sel_value
    for kind, tok in zip(_kinds(form), ops):
        k = _KINDS[kind]
        fields.update(zip(k.fields, k.parse(tok, ctx, pc)))
    nxt = fields.pop("next")
    ins = Insn(form.opcode, **fields)
    return [ins, Insn(0, 0, 0, 0, nxt)] if form.opcode == isa.LDDW_OPCODE else [ins]


@contextmanager
def _at(line_no: int, line: str) -> Iterator[None]:
    """Attach the line to AssemblerErrors raised without one."""
    try:
        yield
    except AssemblerError as e:
        if e.line_no is not None:
            raise
        raise AssemblerError(e.reason, line_no, line) from None


class _Stmt(NamedTuple):
    line_no: int
    line: str
    form: Form
    ops: list[str]
    pc: int


def _parse(text: str) -> tuple[list[_Stmt], dict[str, int]]:
    """Pass 1: statements with their slot index, and the labels."""
    stmts: list[_Stmt] = []
    labels: dict[str, int] = {}
    first_exit, pc = None, 0
    for line_no, line in enumerate(text.splitlines(), 1):
        with _at(line_no, line):
            body = line.split("#", 1)[0]
            while m := _LABEL.match(body):
                if m[1] in labels:
                    raise AssemblerError(f"Duplicate label {m[1]!r}")
                labels[m[1]] = pc
                body = body[m.end():]
            if body.strip():
                form, ops = _statement(body)
                stmts.append(_Stmt(line_no, line, form, ops, pc))
                if form.op == "exit" and first_exit is None:
                    first_exit = pc
                pc += 2 if form.opcode == isa.LDDW_OPCODE else 1
    if first_exit is not None:
        labels.setdefault("exit", first_exit)
    return stmts, labels


def _map_names(maps: Mapping[str, int] | Sequence[str] | None) -> dict[str, int]:
    if maps is None:
        return {}
    if isinstance(maps, Mapping):
        return dict(maps)
    if isinstance(maps, str):
        raise TypeError("maps must be a mapping name -> index or a sequence of names, not a string")
    return {name: i for i, name in enumerate(maps)}


def assemble_insns(text: str, *, helpers: HelperNames | None = None,
                   maps: Mapping[str, int] | Sequence[str] | None = None) -> list[Insn]:
    """Assemble text into instruction slots (lddw takes two). Raises AssemblerError with the line.

    `helpers` names the helpers for `call NAME`: a HelperRegistry or a mapping name -> id (default: the
    default helper registry); `maps` names the maps for `map(NAME)`/`map_value(NAME, off)`: a mapping
    name -> index or a sequence of names (position = index).
    """
    stmts, labels = _parse(text)
    ctx = _Ctx(labels, _helper_names(helpers), _map_names(maps), default_helpers=helpers is None)
    out: list[Insn] = []
    for st in stmts:
        with _at(st.line_no, st.line):
            out += _encode(st.form, st.ops, ctx, st.pc)
    return out


# ------------------------------------------------------------------------------------ disassembler
def _expressible(form: Form, ins: Insn, nxt: Insn | None) -> bool:
    """Whether the syntax can express the slot: reserved fields zero, registers r0..r10, lddw complete."""
    if form.opcode == isa.LDDW_OPCODE and (nxt is None or any(nxt[:4])):
        return False
    for fld in ("dst", "src", "off", "imm"):
        rule, value = getattr(form, fld), getattr(ins, fld)
        if (rule == "zero" and value) or (rule in ("reg", "wreg") and not 0 <= value <= isa.MAX_REG):
            return False
    return True


def _helper_labels(helpers: HelperNames | None) -> dict[int, str]:
    """id -> the name `call` prints (only names that read back as a helper name, not a register)."""
    names = _helper_names(helpers) or {}
    return {hid: name for name, hid in sorted(names.items(), reverse=True)
            if _IDENT.fullmatch(name) and not _REG.fullmatch(name)}


def _line(insns: Sequence[Insn], pc: int, helper_names: Mapping[int, str] | None = None) -> tuple[str, int]:
    """Text of the instruction at pc and the number of slots it covers."""
    norm = [Insn(o, d, s, to_s16(off), to_s32(imm)) for o, d, s, off, imm in insns[pc:pc + 2]]
    ins, nxt = norm[0], (norm[1] if len(norm) > 1 else None)
    form = isa.form_of(ins)
    if form is None or not _expressible(form, ins, nxt):
        return (f"# invalid: opcode {ins.opcode:#04x} dst {ins.dst} src {ins.src} off {ins.off} "
                f"imm {ins.imm}"), 1
    if form.op == "call" and helper_names and ins.imm in helper_names:
        return f"call {helper_names[ins.imm]}", 1
    ops = ", ".join(_KINDS[k].show(ins, nxt) for k in _kinds(form))
    return f"{form.mnemonic} {ops}".rstrip(), (2 if form.opcode == isa.LDDW_OPCODE else 1)


def disassemble_insn(insns: Sequence[Insn], pc: int, *, helpers: HelperNames | None = None) -> str:
    """One instruction (both slots for lddw) as assembly text."""
    return _line(insns, pc, _helper_labels(helpers))[0]


def disassemble(prog_or_insns: Program | Sequence[Insn], *, helpers: HelperNames | None = None) -> str:
    """A Program or list of slots as assembly, one instruction per line (jump targets as +N/-N).

    With `helpers` (a HelperRegistry or a mapping name -> id), `call` prints the helper's name where that
    registry has one (the text assembles back with the same `helpers=`); without, helper ids are numbers.
    """
    insns: list[Insn] = list(prog_or_insns.insns if hasattr(prog_or_insns, "insns") else prog_or_insns)
    names = _helper_labels(helpers)
    lines, pc = [], 0
    while pc < len(insns):
        text, size = _line(insns, pc, names)
        lines.append(text + "\n")
        pc += size
    return "".join(lines)
