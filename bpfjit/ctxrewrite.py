"""The context-access pass of packet programs (the kernel's convert_ctx_accesses, for bpfjit): a pipeline step.

`struct __sk_buff` and `struct xdp_md` hold `data`, `data_end` and `data_meta` as 32-bit fields, but packet
buffers live at 64-bit addresses. Like the kernel, the run builds an internal context (the UAPI struct
followed by hidden u64 fields, progtypes.HIDDEN_FIELDS) and this pass rewrites, at load time, each 4-byte
load of one of those fields through the context pointer into an 8-byte load of the hidden field, so both
engines run the same rewritten program (the verifier checks the original).

Which loads go through the context pointer: a forward must-analysis over the program (registers and
8-byte stack spills of the frame; subprogram arguments joined over their call sites) finds where a
register certainly holds the unmodified context pointer (the kernel refuses accesses through a modified
one, so a constant instruction offset names the field). Accesses through it are checked against the
program type's field rules here (unknown offsets, unreadable or read-only fields, wrong sizes: LoadError
with the pc, as the kernel's verifier refuses them). A 4-byte load at a packet-field offset through a
register the analysis cannot name stays as it is: at run time it reads the low 32 bits of the pointer
(not a valid address: in checked mode using it faults), and a proven program with such a load runs
checked. Helper calls outside the type's allowed set are refused here too.
Nothing here runs programs.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import isa
from .errors import LoadError
from .program import Program, jump_target

CTX, OTHER = 1, 0
_PKT_HIDDEN = {"pkt": "data", "pkt_end": "data_end", "pkt_meta": "data_meta"}
LDXDW = isa.CLS_LDX | isa.MODE_MEM | isa.SIZE_DW


@dataclass
class CtxPass:
    program: Program            # the rewritten program (the input when nothing changed)
    rewritten: tuple            # pcs rewritten to hidden-field loads
    ambiguous: tuple            # 4-byte loads at a packet-field offset through an unknown base


class _State:
    __slots__ = ("regs", "stack")

    def __init__(self, regs, stack):
        self.regs = regs        # tuple of 11 CTX/OTHER
        self.stack = stack      # frozenset of r10 offsets holding a spilled ctx pointer

    def join(self, other: "_State") -> "_State":
        return _State(tuple(a & b for a, b in zip(self.regs, other.regs)), self.stack & other.stack)

    def __eq__(self, other) -> bool:
        return self.regs == other.regs and self.stack == other.stack


def _transfer(f, ins, st: _State) -> _State:
    """The state after one instruction (not a call_local: handled by the caller)."""
    op = f.op
    regs, stack = list(st.regs), st.stack
    if op in ("ldx", "ldxs"):
        regs[ins.dst] = CTX if (op == "ldx" and f.width == 64 and ins.src == 10 and ins.off in stack) else OTHER
    elif op in ("st", "stx") or op.startswith("lock_"):
        if ins.dst == 10:
            size = f.width // 8
            hit = {o for o in stack if o < ins.off + size and ins.off < o + 8}
            stack = stack - hit
            if op == "stx" and size == 8 and st.regs[ins.src] == CTX:
                stack = stack | {ins.off}
        else:
            stack = frozenset()          # may alias the stack
        if op.startswith("lock_"):
            regs[ins.src] = OTHER
            regs[0] = OTHER
    elif op in ("call", "call_btf", "callx"):
        for r in range(6):
            regs[r] = OTHER
        stack = frozenset()              # a helper may write the stack through a pointer
    elif op in ("ldabs", "ldind"):
        regs[0] = OTHER
    elif op.startswith("lddw"):
        regs[ins.dst] = OTHER
    elif f.cls in (isa.CLS_ALU, isa.CLS_ALU64):
        if op == "mov" and f.is64 and f.srcreg:
            regs[ins.dst] = st.regs[ins.src]
        else:
            regs[ins.dst] = OTHER
    return _State(tuple(regs), stack)


def analyse(program: Program) -> list:
    """State before each pc (None where unreachable): which registers / stack slots hold the ctx pointer."""
    insns, forms = program.insns, program.forms
    n = len(insns)
    before: list = [None] * n
    entry = _State((OTHER, CTX) + (OTHER,) * 9, frozenset())
    work = [0]
    before[0] = entry

    def flow(pc, st):
        if pc >= n:
            return
        cur = before[pc]
        new = st if cur is None else cur.join(st)
        if cur is None or not new == cur:
            before[pc] = new
            work.append(pc)

    while work:
        pc = work.pop()
        st, f, ins = before[pc], forms[pc], insns[pc]
        if f is None:
            continue
        op = f.op
        if op == "exit":
            continue
        if op == "call_local":
            tgt = jump_target(pc, ins, f)
            flow(tgt, _State((OTHER,) + st.regs[1:6] + (OTHER,) * 5, frozenset()))
            after = list(st.regs)
            for r in range(6):
                after[r] = OTHER
            flow(pc + 1, _State(tuple(after), frozenset()))
            continue
        nxt = _transfer(f, ins, st)
        if op in ("ja", "ja32"):
            flow(jump_target(pc, ins, f), nxt)
            continue
        if op in isa.COND_JUMPS:
            flow(jump_target(pc, ins, f), nxt)
        flow(pc + (2 if op.startswith("lddw") else 1), nxt)
    return before


def fields_read(program: Program, ptype) -> set:
    """Names of the context fields `program` may read: loads through the context pointer name their field;
    a load through a register the analysis cannot name (not the stack) may read any field it overlaps."""
    before = analyse(program)
    out = set()
    for pc, f in enumerate(program.forms):
        st = before[pc]
        if f is None or st is None or f.op not in ("ldx", "ldxs"):
            continue
        ins = program.insns[pc]
        if ins.src == 10:
            continue
        lo, hi = ins.off, ins.off + f.width // 8
        if st.regs[ins.src] == CTX:
            fld = ptype.field_at(lo)
            if fld is not None:
                out.add(fld.name)
        else:
            out |= {fld.name for fld in ptype.fields if fld.off < hi and lo < fld.off + fld.size}
    return out


def _check_access(ptype, pc, f, ins, off, size, write) -> None:
    fld = ptype.field_at(off) if off >= 0 else None
    what = f"{ptype.ctx} ({ptype.name} program)"
    if fld is None:
        raise LoadError(f"invalid access to {what} at offset {off}, {size} bytes: no field there", pc, "off")
    if fld.kind != "scalar" and (size != 4 or off != fld.off):
        raise LoadError(f"{what} field {fld.name} is a packet pointer: only a 4-byte load of it is allowed",
                        pc, "off")
    if off % size:
        raise LoadError(f"misaligned access to {what} field {fld.name} at offset {off}, {size} bytes", pc, "off")
    if off + size > fld.off + fld.size:
        raise LoadError(f"invalid access to {what} at offset {off}, {size} bytes: crosses the end of field "
                        f"{fld.name}", pc, "off")
    if write and not fld.write:
        raise LoadError(f"{what} field {fld.name} is read-only", pc, "off")
    if not write and not fld.read:
        raise LoadError(f"{what} field {fld.name} is not readable", pc, "off")


def rewrite(program: Program, ptype) -> CtxPass:
    """Check and rewrite the context accesses of a packet program (see the module docstring)."""
    if ptype.packet is None:
        return CtxPass(program, (), ())
    insns, forms = list(program.insns), program.forms
    allowed = ptype.helpers
    for pc, f in enumerate(forms):
        if f is not None and f.op == "call" and allowed is not None and insns[pc].imm not in allowed:
            raise LoadError(f"a {ptype.name} program may not call helper {insns[pc].imm}", pc, "imm")
    before = analyse(program)
    pkt_offs = {fld.off: fld for fld in ptype.fields if fld.kind != "scalar"}
    rewritten, ambiguous = [], []
    for pc, f in enumerate(forms):
        st = before[pc]
        if f is None or st is None:
            continue
        op, ins = f.op, insns[pc]
        size = f.width // 8 if f.width else 0
        if op in ("ldx", "ldxs"):
            base, write = ins.src, False
        elif op in ("st", "stx") or op.startswith("lock_"):
            base, write = ins.dst, True
        else:
            continue
        if st.regs[base] != CTX:
            if op == "ldx" and size == 4 and base != 10 and ins.off in pkt_offs:
                ambiguous.append(pc)
            continue
        if op.startswith("lock_"):
            raise LoadError(f"atomic access to {ptype.ctx} ({ptype.name} program)", pc, "opcode")
        _check_access(ptype, pc, f, ins, ins.off, size, write)
        fld = pkt_offs.get(ins.off)
        if fld is not None and op == "ldxs":
            raise LoadError(f"{ptype.ctx} ({ptype.name} program) field {fld.name} is a packet pointer: a "
                            "sign-extending load of it is not allowed", pc, "opcode")
        if fld is not None and op == "ldx":
            insns[pc] = isa.Insn(LDXDW, ins.dst, ins.src, ptype.hidden_off(_PKT_HIDDEN[fld.kind]), 0)
            rewritten.append(pc)
    if not rewritten:
        return CtxPass(program, (), tuple(ambiguous))
    new = Program(insns, name=program.name, license=program.license, kern_version=program.kern_version,
                  prog_type=program.prog_type, maps=program.maps, source=program.source)
    for attr in ("cbpf", "btf", "func_info", "line_info"):
        if hasattr(program, attr):
            setattr(new, attr, getattr(program, attr))
    new._forms = list(forms)
    for pc in rewritten:
        new._forms[pc] = isa.form_of(insns[pc])
    return CtxPass(new, tuple(rewritten), tuple(ambiguous))
