"""Lowering of calls and returns (a mixin of lower.FunctionLowering): BPF-to-BPF calls (the subprogram
calling convention of lower_abi), helper calls (native IR twin or Python callback through the state's
table), callx, exit, and the check of the state after a call that may have left a fault or a pending tail
call. The tail-call trampoline itself is in the entry points (lower_entry).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llvmlite import ir

from . import state as S
from ..program import jump_target
from .irlib import HELPER_FN, I64, I64P, RET, c64
from .lower_abi import SubArgs


class CallMixin:
    if TYPE_CHECKING:       # a mixin: every other attribute is the FunctionLowering (lower.py)'s
        def __getattr__(self, name: str) -> Any: ...

    # ---- safety (issue 8): the stop poll, kept apart from the call lowering ----
    def polls_at(self, pc: int) -> bool:
        """Checked code polls STOP at every back-edge target (every cycle passes one; local calls are bounded
        by max_call_depth); the batch and bench loops poll every STOP_POLL_EVERY runs (lower_entry)."""
        heads = self.low.__dict__.get("_loop_heads")
        if heads is None:
            low = self.low
            heads = low._loop_heads = {t for pc_, f in enumerate(low.forms) if f is not None
                                       for t in (jump_target(pc_, low.insns[pc_], f),)
                                       if t is not None and f.op != "call_local" and t <= pc_}
        return pc in heads

    def emit_stop_poll(self, pc: int) -> None:
        """Fault "timeout" when the watchdog asked this thread's run to stop (state slot STOP; an atomic
        load, so it is re-read on every pass). Proven and trusted code has no poll."""
        b = self.b
        stop = b.load_atomic(b.gep(self.st, [c64(S.STOP)]), "monotonic", 8)
        go = self.fn.append_basic_block(f"pc{pc}_go")
        b.cbranch(b.icmp_unsigned("!=", stop, c64(0)), self.fault_block("timeout", pc), go) \
            .set_metadata("prof", self.low.weights_cold)
        b.position_at_end(go)

    def emit_exit(self, pc, f, ins):
        b = self.b
        b.store(b.load(self.cnt), self.slot(S.COUNT))
        self.leave(b, [self.reg(i) for i in range(1 if self.host is not None else 6)])
        return None

    def propagate_if_fault(self, pc: int | None = None):
        """After a call: if the state holds a fault, return at once (setting its pc if given)."""
        b = self.b
        bad = b.icmp_unsigned("!=", b.load(self.slot(S.F_KIND)), c64(0))
        cont = self.fn.append_basic_block(f"after_call{len(self.fn.blocks)}")
        self.prop_pc.add_incoming(c64(-1 if pc is None else pc), b.block)
        b.cbranch(bad, self.prop_exit, cont).set_metadata("prof", self.low.weights_cold)
        b.position_at_end(cont)

    def emit_call_local(self, pc, f, ins):
        b, low = self.b, self.low
        target = pc + 1 + ins.imm
        too_deep = b.icmp_unsigned(">=", b.add(self.depth, c64(1)), c64(low.cfg.max_call_depth))
        cont = self.fn.append_basic_block(f"pc{pc}_call")
        b.cbranch(too_deep, self.fault_block("call_depth", pc), cont).set_metadata("prof", self.low.weights_cold)
        b.position_at_end(cont)
        b.store(b.load(self.cnt), self.slot(S.COUNT))
        regs = tuple(self.reg(i) for i in range(10)) + (b.sub(self.reg(10), c64(low.cfg.stack_size)),)
        args = SubArgs(self.st, regs, b.add(self.depth, c64(1)), tuple(self.rows))
        res = b.call(low.subs[target], args.flat())
        b.store(b.load(self.slot(S.COUNT)), self.cnt)
        self.propagate_if_fault()
        for i in range(6):
            self.set(i, b.extract_value(res, i))
        return pc + 1

    def emit_call(self, pc, f, ins):
        self._call_helper(pc, self.low.plan.entries[(f.op, ins.imm)])
        return pc + 1

    def _call_helper(self, pc, entry):
        b = self.b
        kind, what = entry
        args = [self.reg(i) for i in range(1, 6)]
        if kind == "native":
            r0 = b.call(self.low.native_fn(what), [self.st] + args)
        else:
            table = b.inttoptr(b.load(self.slot(S.HELPERS)), I64P)
            fptr = b.inttoptr(b.load(b.gep(table, [c64(what)])), HELPER_FN.as_pointer())
            b.store(b.load(self.cnt), self.slot(S.COUNT))
            r0 = b.call(fptr, [b.ptrtoint(self.st, I64)] + args)
        self.set(0, r0)
        if kind != "native" or self.low.native.may_fault(what):
            self.propagate_if_fault(pc)

    def emit_callx(self, pc, f, ins):
        b, low = self.b, self.low
        ids = sorted(k[1] for k in low.plan.entries if k[0] == "callx")
        target = self.reg(ins.dst)
        for i in range(1, 6):
            self.reg(i)                       # load the arguments once, before the paths split
        self.flush()
        done = self.fn.append_basic_block(f"pc{pc}_callx_done")
        sw = b.switch(target, self.fault_block("bad_call", pc))
        for hid in ids:
            blk = self.fn.append_basic_block(f"pc{pc}_callx_{hid}")
            sw.add_case(c64(hid), blk)
            b.position_at_end(blk)
            self._call_helper(pc, low.plan.entries[("callx", hid)])
            self.flush()
            del self.cache[0]                 # this path's r0 does not reach the other cases
            b.branch(done)
        b.position_at_end(done)
        self.forget()
        return pc + 1
