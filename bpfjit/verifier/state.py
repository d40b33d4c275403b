"""Verifier states: a `Frame` (registers r0..r10 and the stack of one call frame) and a `State` (the frames
of the call chain plus the acquired references), their cheap copies (registers and stack slots are
immutable, so a copy is a shallow copy of one list and one dict per frame), `states_equal` (an explored
state covers a new one: pruning) and the kernel-style text of a state.

The stack is kept per 8-byte slot: slot k covers offsets -8(k+1)..-8k-1 from the frame's r10; a slot is
(spilled register or None, 8 per-byte kinds: 'i' STACK_INVALID, 'm' STACK_MISC, 'z' STACK_ZERO, 's'
STACK_SPILL). A missing slot is all invalid. Reading and writing the stack is in access.py.
"""
from __future__ import annotations

from .regs import NOT_INIT_REG, SCALAR, regsafe, check_id

INVALID_SLOT = (None, "iiiiiiii")


def rewrite_regs(st, fn) -> None:
    """Replace every register and spilled register of every frame of `st` by fn(reg) when that is not None
    (the walk behind learning facts for all copies of a value: null checks, packet ranges, lengths)."""
    for fr in st.frames:
        regs = fr.regs
        for i in range(11):
            new = fn(regs[i])
            if new is not None:
                regs[i] = new
        for k, (spill, kinds) in list(fr.stack.items()):
            if spill is not None:
                new = fn(spill)
                if new is not None:
                    fr.stack[k] = (new, kinds)


class Frame:
    __slots__ = ("regs", "stack", "callsite", "subprog")

    def __init__(self, regs, stack, callsite=-1, subprog=0):
        self.regs, self.stack, self.callsite, self.subprog = regs, stack, callsite, subprog

    def copy(self) -> "Frame":
        return Frame(list(self.regs), dict(self.stack), self.callsite, self.subprog)


class State:
    __slots__ = ("frames", "refs", "parent", "trail")

    def __init__(self, frames, refs=(), parent=None, trail=None):
        self.frames = frames          # [Frame]; the last is the current one
        self.refs = refs              # ((ref id, pc of the acquire), ...)
        self.parent = parent          # Checkpoint this path continues (pruning bookkeeping)
        self.trail = trail            # (pc, previous trail) of the path, kept when logging

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    def copy(self) -> "State":
        return State([f.copy() for f in self.frames], self.refs, self.parent, self.trail)


def new_frame(callsite: int = -1, subprog: int = 0) -> Frame:
    return Frame([NOT_INIT_REG] * 11, {}, callsite, subprog)


def slot_safe(old, new, idmap) -> bool:
    if old is new:
        return True
    ospill, okinds = old
    nspill, nkinds = new
    for o, n in zip(okinds, nkinds):
        if o == "i" or o == n:
            continue
        if o == "m" and (n == "z" or (n == "s" and nspill.type is SCALAR)):
            continue
        return False
    if ospill is not None:
        return nspill is not None and regsafe(ospill, nspill, idmap)
    return True


def states_equal(old: State, new: State, live: int) -> bool:
    """Whether `old` (explored) covers `new` at the same instruction; `live` = bitmask of the registers of
    the current frame that may be read later (the others are ignored)."""
    if len(old.frames) != len(new.frames):
        return False
    idmap: dict = {}
    last = len(old.frames) - 1
    for i, (fo, fn) in enumerate(zip(old.frames, new.frames)):
        if fo.callsite != fn.callsite:
            return False
        oregs, nregs = fo.regs, fn.regs
        for r in range(11):
            if i == last and not (live >> r) & 1:
                continue
            if not regsafe(oregs[r], nregs[r], idmap):
                return False
        ostack, nstack = fo.stack, fn.stack
        if ostack is not nstack:
            for k, oslot in ostack.items():
                if oslot[1] == "iiiiiiii":
                    continue
                if not slot_safe(oslot, nstack.get(k, INVALID_SLOT), idmap):
                    return False
    if len(old.refs) != len(new.refs):
        return False
    return all(check_id(a[0], b[0], idmap) for a, b in zip(old.refs, new.refs))


def regs_key(st: State, live: int):
    """Hashable exact identity of the registers (dead ones of the current frame ignored) and references."""
    out = []
    last = len(st.frames) - 1
    for i, f in enumerate(st.frames):
        regs = f.regs
        out.append((f.callsite, tuple(regs[r].key() if (i != last or (live >> r) & 1) else None
                                      for r in range(11))))
    out.append(tuple(r for r, _ in st.refs))
    return tuple(out)


def same_stacks(a: State, b: State) -> bool:
    """Equal stacks in every frame (slots are shared between copies, so this is mostly identity checks)."""
    return all(fa.stack == fb.stack for fa, fb in zip(a.frames, b.frames))


# ------------------------------------------------------------------------------------ text
def fmt_regs(frame: Frame, only=None, written=()) -> str:
    parts = []
    for r in range(11):
        reg = frame.regs[r]
        if reg is NOT_INIT_REG or (only is not None and r not in only):
            continue
        parts.append(f"R{r}{'_w' if r in written else ''}={reg.fmt()}")
    return " ".join(parts)


def fmt_stack(frame: Frame) -> str:
    parts = []
    for k in sorted(frame.stack):
        spill, kinds = frame.stack[k]
        if kinds == "iiiiiiii":
            continue
        off = -8 * (k + 1)
        if spill is not None and kinds == "ssssssss":
            parts.append(f"fp{off}={spill.fmt()}")
        else:
            parts.append(f"fp{off}={kinds[::-1].replace('i', '?')}")
    return " ".join(parts)


def fmt_state(st: State) -> str:
    out = []
    for i, f in enumerate(st.frames):
        prefix = f"frame{i}: " if len(st.frames) > 1 else ""
        text = " ".join(x for x in (fmt_regs(f), fmt_stack(f)) if x)
        out.append(prefix + text)
    if st.refs:
        out.append("refs=" + ",".join(str(r) for r, _ in st.refs))
    return " ".join(out)
