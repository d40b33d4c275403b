"""The control-flow pass that runs before path exploration (the kernel's check_cfg): subprogram bounds
(entry 0 and every `call local` target), jumps that leave their subprogram, jumps into the middle of an
lddw, back-edges (refused unless loops are allowed), unreachable instructions; and the static facts the
exploration uses: prune points and register liveness (registers that may be read before written).
"""
from __future__ import annotations

from bisect import bisect_right

from .. import isa
from ..errors import VerifierError
from ..program import jump_target

ARGS = 0b111110          # r1..r5
CALL_DEFS = 0b111111     # r0..r5


class CFG:
    """subprogs: sorted start pcs; succ[pc]: successor pcs inside the subprogram; prune: pcs where states
    are compared; loop_heads: back-edge targets; live[pc]: bitmask of registers live at pc's entry."""

    def __init__(self, program, helper_args, allow_loops: bool):
        insns, forms = program.insns, program.forms
        self.n = n = len(insns)
        second = isa.lddw_slots(insns)
        starts = {0}
        for pc, f in enumerate(forms):
            if f is not None and f.op == "call_local":
                starts.add(pc + 1 + insns[pc].imm)
        self.subprogs = sorted(starts)
        ends = self.subprogs[1:] + [n]
        self.subprog_end = dict(zip(self.subprogs, ends))
        self.succ: list = [()] * n
        self.prune = set(self.subprogs)
        for pc, f in enumerate(forms):
            if f is None:
                continue
            sub = self.subprog_of(pc)
            end = self.subprog_end[sub]
            op = f.op
            nxt = pc + 2 if op.startswith("lddw") else pc + 1
            t = jump_target(pc, insns[pc], f)
            succ: tuple[int, ...]
            if op == "call_local":
                succ = (nxt,)
                self.prune.add(nxt)
            elif op in isa.COND_JUMPS:
                assert t is not None
                succ = (nxt, t)
                self.prune.update(succ)
            elif op in ("ja", "ja32"):
                assert t is not None
                succ = (t,)
                self.prune.add(t)
            elif op == "exit":
                succ = ()
            else:
                succ = (nxt,)
            for s in succ:
                if s in second:
                    raise VerifierError(f"jump into the middle of ldimm64 insn {s}", pc)
                if not sub <= s < end:
                    if s == end and s == nxt:
                        raise VerifierError("last insn is not an exit or jmp", pc)
                    raise VerifierError(f"jump out of range from insn {pc} to {s}", pc)
            self.succ[pc] = succ
        self._dfs(program, allow_loops)
        self.live = self._liveness(program, helper_args)

    def subprog_of(self, pc: int) -> int:
        return self.subprogs[bisect_right(self.subprogs, pc) - 1]

    def _dfs(self, program, allow_loops: bool) -> None:
        forms, insns = program.forms, program.insns
        state = [0] * self.n       # 0 unseen, 1 on the DFS stack, 2 done
        self.loop_heads = set()    # targets of back-edges: every cycle passes one
        roots = [0]
        seen_roots = {0}
        while roots:
            root = roots.pop()
            stack = [(root, 0)]
            state[root] = 1
            while stack:
                pc, i = stack[-1]
                succ = self.succ[pc]
                if i == 0 and forms[pc].op == "call_local":
                    t = pc + 1 + insns[pc].imm
                    if t not in seen_roots:
                        seen_roots.add(t)
                        roots.append(t)
                if i < len(succ):
                    stack[-1] = (pc, i + 1)
                    s = succ[i]
                    if state[s] == 1:
                        self.loop_heads.add(s)
                        if not allow_loops:
                            raise VerifierError(f"back-edge from insn {pc} to {s}", pc)
                    elif state[s] == 0:
                        state[s] = 1
                        stack.append((s, 0))
                else:
                    state[pc] = 2
                    stack.pop()
        for pc, f in enumerate(forms):
            if f is not None and state[pc] == 0:
                raise VerifierError(f"unreachable insn {pc}", pc)

    def _liveness(self, program, helper_args) -> list:
        forms, insns = program.forms, program.insns
        n = self.n
        use = [0] * n
        defs = [0] * n
        for pc, f in enumerate(forms):
            if f is not None:
                use[pc], defs[pc] = use_def(f, insns[pc], helper_args)
        pred: list = [[] for _ in range(n)]
        for pc in range(n):
            for s in self.succ[pc]:
                pred[s].append(pc)
        live = [0] * n
        work = [pc for pc in range(n) if forms[pc] is not None]
        inwork = set(work)
        while work:
            pc = work.pop()
            inwork.discard(pc)
            out = 0
            for s in self.succ[pc]:
                out |= live[s]
            new = use[pc] | (out & ~defs[pc])
            if new != live[pc]:
                live[pc] = new
                for p in pred[pc]:
                    if p not in inwork:
                        inwork.add(p)
                        work.append(p)
        return live


def use_def(f, ins, helper_args) -> tuple[int, int]:
    """(registers read, registers written) by one instruction."""
    op = f.op
    d, s = 1 << ins.dst, 1 << ins.src
    if f.cls in (isa.CLS_ALU, isa.CLS_ALU64):
        if op == "mov" or op.startswith("movsx"):
            return (s if f.srcreg else 0), d
        return d | (s if f.srcreg else 0), d
    if op == "ldx" or op == "ldxs":
        return s, d
    if op == "st":
        return d, 0
    if op == "stx":
        return d | s, 0
    if op.startswith("lock_"):
        if op == "lock_cmpxchg":
            return d | s | 1, 1
        return d | s, (s if ("fetch" in op or op == "lock_xchg") else 0)
    if op.startswith("lddw"):
        return 0, d
    if op == "ldabs":
        return 0, 1
    if op == "ldind":
        return s, 1
    if op in isa.COND_JUMPS:
        return d | (s if f.srcreg else 0), 0
    if op in ("call", "call_btf"):
        nargs = helper_args(op, ins.imm)
        return ((1 << (nargs + 1)) - 2), CALL_DEFS
    if op == "callx":
        return d | ARGS, CALL_DEFS
    if op == "call_local":
        return ARGS, CALL_DEFS
    if op == "exit":
        return 1, 0
    return 0, 0
