"""The calling convention of lowered subprograms, as one named structure.

Every BPF subprogram (the entry at pc 0 and each local-call target) is an internal LLVM function
`{r0..r5} fn(st, r0..r10, depth, row0 lo/hi/perms, row1 lo/hi/perms)`: the state block, the eleven
registers, the call depth, and rows 0 (the run's mem/ctx) and 1 (the stack) of the region table, which are
fixed during a run and travel as SSA values so bounds are loop-invariant. `SubArgs` names those
arguments; `SUB_FN` is the function type generated from it. `Host` is the other convention: subprogram 0
emitted straight into the entry point's repeat loop (no function, no call, no inlining by LLVM). Nothing
else lives here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from llvmlite import ir

from .irlib import I64, I64P, RET, c64

NREGS = 11


class SubArgs(NamedTuple):
    st: object                 # i64* state block
    regs: tuple                # r0..r10 (i64)
    depth: object              # call depth of the frame (i64)
    rows: tuple                # region rows 0 and 1: (lo0, hi0, perms0, lo1, hi1, perms1)

    def flat(self) -> list:
        """The argument list of a call."""
        return [self.st, *self.regs, self.depth, *self.rows]

    @classmethod
    def of(cls, fn: ir.Function) -> "SubArgs":
        """The arguments of a subprogram function, by name."""
        a = list(fn.args)
        return cls(a[0], tuple(a[1:1 + NREGS]), a[1 + NREGS], tuple(a[2 + NREGS:]))

    @classmethod
    def entry(cls, st, r1, r2, r10, rows) -> "SubArgs":
        """The arguments of an entry into subprogram 0: r1, r2 given, r10 the frame, the rest zero."""
        regs = (c64(0), r1, r2) + (c64(0),) * 7 + (r10,)
        return cls(st, regs, c64(0), tuple(rows))


SUB_FN = ir.FunctionType(RET, [I64P] + [I64] * NREGS + [I64] + [I64] * 6)
assert len(SUB_FN.args) == len(SubArgs._fields) - 2 + NREGS + 6


@dataclass
class Host:
    """Where subprogram 0 is emitted when it is lowered into the entry point itself: the function, a builder
    at the point each run starts (`builder`), a builder in the function's entry block (before its
    terminator: allocas, state-slot addresses and values that stay the same for every run, such as the
    region-row limits), the arguments of the run (SubArgs), the spans (hi - lo) of region rows 0 and 1 as
    entry-block values, the block the program leaves through with its r0 (`exit_phi`), and where it goes
    after a fault (`fault_block`; None: through the exit with r0 = 0, the fault in the state)."""
    fn: ir.Function
    builder: ir.IRBuilder
    entry_builder: ir.IRBuilder
    args: SubArgs
    spans: dict
    exit_block: ir.Block
    exit_phi: ir.PhiInstr
    fault_block: ir.Block | None = None
