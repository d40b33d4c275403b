"""Code of a BPF object: functions of the executable sections, relocations of their instructions, and
linking a program with the `.text` subprograms it calls (bpf-to-bpf calls), as libbpf does.

- `Func`: one function (symbol) of an executable section, as a slot range.
- `CodeSection`: one executable section: its bytes, functions and relocations by slot, where each relocation
  is already classified by the instruction it patches: `Ref` ("map", "data" for lddw to maps and global data;
  "call" for calls to subprograms; "error" for what cannot be loaded: extern functions and variables, code
  addresses).
- `link(func, sections)`: the program's code with every reachable subprogram appended once and each call's
  imm set to the relative slot, plus its lddw refs at their final slots. Recursion and calls into the middle
  of functions are reported as `LinkError` (a program-level problem, raised by load()).
Structural problems (a relocation outside its section, or on an instruction that is neither lddw nor call)
are ELFErrors raised while reading. Applying map fds (at load) is `apply_refs`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .. import isa
from ..errors import ELFError

CALL = isa.CLS_JMP | 0x80          # 0x85
LDDW = isa.LDDW_OPCODE             # 0x18
PSEUDO_CALL = 1
_IMM = struct.Struct("<i")


@dataclass(frozen=True)
class Ref:
    """What the relocation of one instruction means. kind: "map" (lddw map), "data" (lddw global data at
    `offset`), "call" (a subprogram call: `section`, `slot` of the target), "error" (`name` = message)."""
    kind: str
    name: str = ""
    offset: int = 0
    section: int = -1
    slot: int = -1


@dataclass(eq=False)
class Func:
    name: str
    section: int
    start: int           # first slot in the section
    end: int             # one past the last slot
    is_global: bool

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(eq=False)
class CodeSection:
    index: int
    name: str
    code: bytes
    funcs: list[Func] = field(default_factory=list)
    refs: dict[int, Ref] = field(default_factory=dict)          # slot -> relocation meaning
    starts: dict[int, Func] = field(default_factory=dict)       # first slot -> function
    calls: np.ndarray | None = None                             # slots of pseudo calls (src 1)

    def __post_init__(self):
        slots = np.frombuffer(self.code, dtype=np.uint8)[: len(self.code) // 8 * 8].reshape(-1, 8)
        self.calls = np.nonzero((slots[:, 0] == CALL) & ((slots[:, 1] >> 4) == PSEUDO_CALL))[0]

    def set_funcs(self, funcs: list[Func]) -> None:
        self.funcs = sorted(funcs, key=lambda f: f.start)
        self.starts = {f.start: f for f in self.funcs}

    def imm(self, slot: int) -> int:
        return _IMM.unpack_from(self.code, slot * 8 + 4)[0]


class LinkError(Exception):
    """A program that cannot be linked (recursion, bad call target); load() turns it into a LoadError."""

    def __init__(self, message: str, pc: int | None = None):
        self.pc = pc
        super().__init__(message)


@dataclass
class Linked:
    code: bytes                               # the program followed by its subprograms
    refs: list[tuple[int, Ref]]               # (slot in code, map/data/error ref)
    funcs: list[Func]                         # in layout order; funcs[0] is the program


def check_reloc_slot(sec: CodeSection, off: int, rel_name: str, entry_off: int) -> tuple[int, int]:
    """(slot, opcode) a relocation at byte `off` of `sec` patches; ELFError unless it is an lddw or a call."""
    if off % 8 or off < 0 or off + 8 > len(sec.code):
        raise ELFError(f"relocation offset {off:#x} is not an instruction of section {sec.name!r} "
                       f"({len(sec.code)} bytes)", rel_name, entry_off)
    slot = off // 8
    op = sec.code[off]
    if op == LDDW:
        if off + 16 > len(sec.code):
            raise ELFError(f"relocated lddw at instruction {slot} of {sec.name!r} is truncated", rel_name,
                           entry_off)
    elif op != CALL:
        raise ELFError(f"relocation at instruction {slot} of {sec.name!r} patches opcode {op:#04x}, which is "
                       f"neither lddw nor call", rel_name, entry_off)
    return slot, op


def _callees(f: Func, sections: dict[int, CodeSection], cache: dict) -> list:
    """[(slot in f, target Func)] of f's bpf-to-bpf calls; LinkError for a bad target."""
    hit = cache.get(id(f))
    if hit is not None:
        return hit
    sec = sections[f.section]
    out = []
    assert sec.calls is not None                      # set by __post_init__
    lo, hi = np.searchsorted(sec.calls, [f.start, f.end])
    for slot in sec.calls[lo:hi].tolist():
        ref = sec.refs.get(slot)
        if ref is not None and ref.kind == "error":
            continue                                   # reported as a ref by link()
        if ref is not None:
            tsec, tslot = sections.get(ref.section), ref.slot
        else:                                          # a call inside the section, resolved by the compiler
            tsec, tslot = sec, slot + 1 + sec.imm(slot)
        target = tsec.starts.get(tslot) if tsec is not None else None
        if target is None:
            where = f"{tsec.name!r} instruction {tslot}" if tsec is not None else f"section #{ref.section if ref else '?'}"
            raise LinkError(f"call in {f.name!r} targets {where}, which is not the start of a function",
                            slot - f.start)
        out.append((slot - f.start, target))
    cache[id(f)] = out
    return out


def link(prog: Func, sections: dict[int, CodeSection], cache: dict | None = None) -> Linked:
    cache = {} if cache is None else cache
    # recursion check (iterative DFS with colours) and layout in discovery order
    order, place, pos = [prog], {id(prog): 0}, len(prog)
    state = {id(prog): 1}
    stack = [(prog, iter(_callees(prog, sections, cache)))]
    while stack:
        f, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[id(f)] = 2
            stack.pop()
            continue
        _, g = nxt
        st = state.get(id(g))
        if st == 1:
            chain = " -> ".join(x.name for x, _ in stack) + f" -> {g.name}"
            raise LinkError(f"recursive bpf-to-bpf calls are not allowed: {chain}")
        if st is None:
            state[id(g)] = 1
            place[id(g)] = pos
            pos += len(g)
            order.append(g)
            stack.append((g, iter(_callees(g, sections, cache))))
    code = bytearray(b"".join(sections[f.section].code[f.start * 8:f.end * 8] for f in order))
    refs: list[tuple[int, Ref]] = []
    for f in order:
        base = place[id(f)]
        for local, g in _callees(f, sections, cache):
            pc = base + local
            _IMM.pack_into(code, pc * 8 + 4, place[id(g)] - (pc + 1))
            code[pc * 8 + 1] = (code[pc * 8 + 1] & 0x0F) | (PSEUDO_CALL << 4)
        sec = sections[f.section]
        if sec.refs:
            for slot, ref in sec.refs.items():
                if f.start <= slot < f.end and ref.kind != "call":
                    refs.append((base + slot - f.start, ref))
    refs.sort(key=lambda r: r[0])
    return Linked(bytes(code), refs, order)


def apply_refs(code: bytes, refs: list[tuple[int, Ref]], fds: dict[str, int]) -> bytearray:
    """The code with lddw map refs as src 1 (BPF_PSEUDO_MAP_FD, imm = fd) and data refs as src 2
    (BPF_PSEUDO_MAP_VALUE, imm = fd, second imm = offset)."""
    out = bytearray(code)
    for pc, ref in refs:
        o = pc * 8
        if ref.kind == "map":
            out[o + 1] = (out[o + 1] & 0x0F) | (isa.LDDW_MAP_FD << 4)
            _IMM.pack_into(out, o + 4, fds[ref.name])
            _IMM.pack_into(out, o + 12, 0)
        elif ref.kind == "data":
            out[o + 1] = (out[o + 1] & 0x0F) | (isa.LDDW_MAP_VALUE << 4)
            _IMM.pack_into(out, o + 4, fds[ref.name])
            _IMM.pack_into(out, o + 12, isa.to_s32(ref.offset))
    return out
