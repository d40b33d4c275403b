"""Lowering of a validated `Program` to ONE LLVM IR module (llvmlite.ir), llvmbpf style: the driver.

Registers are allocas promoted by mem2reg, every basic-block leader (program.leaders) gets an LLVM block,
every BPF subprogram (entry and each local-call target) becomes an internal LLVM function (calling
convention: lower_abi.SubArgs), and LLVM's optimiser does the rest. In checked mode each block charges the
instruction meter on entry, exactly as the interpreter does, and memory accesses are checked as the
block's check plan says (lower_mem); faults are written into the state block (state.py) and unwind by
return. This module holds the program-level analysis (`Lowering`) and the per-function core
(`FunctionLowering`: register cache, blocks, the meter, shared fault exits, instruction dispatch); the
instruction families live in lower_alu (ALU, jumps), lower_mem (memory, checks), lower_calls (calls,
helpers, exit) and the exported entry points in lower_entry. Compilation and calling live in
compiler.py / engine.py.
"""
from __future__ import annotations

from llvmlite import ir

from .. import isa
from ..errors import FAULT_CODE, LoadError
from ..progtypes import PACKET_TYPES
from ..program import Config, Program, block_costs, jump_target, leaders, meter_points
from . import lower_entry, lower_pkt, target
from . import state as S
from .irlib import COLD, HOT, I64, RET, c64, fault_info, set_fault_fn
from .lower_abi import NREGS, SUB_FN, Host, SubArgs
from .lower_alu import AluMixin
from .lower_calls import CallMixin
from .lower_mem import MemoryMixin

# The entry points of each module kind: a program run by a VM ("program": one compile serves run,
# run_batch and bench) and a prog_array slot's target ("tail": the tail-call entry only).
ENTRY_POINTS = ("bpf_entry",)
MODULE_KINDS = {"program": ENTRY_POINTS, "tail": ("bpf_tail_entry",)}
INLINE_LIMIT = 300      # reachable instructions of subprogram 0 up to which bpf_entry inlines it


class HelperPlan:
    """How lowered code reaches each helper id: ("native", name) or ("py", slot in the callback table)."""

    def __init__(self, entries: dict[int, tuple[str, object]]):
        self.entries = entries


class Lowering:
    """The program-level facts the functions share, and the module being built."""

    def __init__(self, prog: Program, config: Config, plan: HelperPlan, lddw_values: dict[int, int],
                 native_helpers=None, kind: str = "program", helper_table: int = 0):
        self.kind = kind
        self.helper_table = helper_table     # the tail entry installs this Python-helper table (0: none)
        self.prog = prog
        self.cfg = config
        self.checked = config.checked
        self.metered = config.checked and config.insn_limit is not None
        self.plan = plan
        self.lddw = lddw_values
        self.native = native_helpers
        self.module = ir.Module(name="bpfjit")
        # branch weights (one metadata node each): checks pass, faults are rare
        self.weights_hot, self.weights_cold = (
            self.module.add_metadata([ir.MetaDataString(self.module, "branch_weights")] +
                                     [ir.Constant(ir.IntType(32), w) for w in ws]) for ws in (HOT, COLD))
        self.insns = prog.insns
        self.forms = prog.forms
        self.leaders = leaders(prog)
        self.leader_set = set(self.leaders)
        self.costs = block_costs(prog)
        self.meter_points = meter_points(prog)
        ops = {f.op for f in self.forms if f is not None}
        self.uses_packet = bool(ops & {"ldabs", "ldind"})
        self.calls_helpers = bool(ops & {"call", "call_btf", "callx"})
        # can a run leave anything in the state's fault slot (a fault, an implicit exit, a tail call)?
        self.may_signal = self.checked or self.metered or self.uses_packet or bool(
            ops & {"call", "call_btf", "callx", "call_local"})
        self.calls_entry = any(f is not None and f.op == "call_local" and jump_target(pc, prog.insns[pc], f) == 0
                               for pc, f in enumerate(self.forms))
        self.subs: dict[int, ir.Function] = {}
        self.longest_block = 0          # instructions in the longest basic block (code generation cost)
        self._native_fns: dict[str, ir.Function] = {}

    # ---- analysis ----
    def successors(self, pc: int) -> list[int]:
        f = self.forms[pc]
        assert f is not None            # successors of an instruction slot, never of an lddw's second half
        ins = self.insns[pc]
        nxt = pc + (2 if f.op.startswith("lddw") else 1)
        if f.op == "exit":
            return []
        t = jump_target(pc, ins, f)
        if f.op in ("ja", "ja32"):
            return [t] if t is not None else []
        if f.op in isa.COND_JUMPS:
            return [nxt, t] if t is not None else [nxt]
        return [nxt]

    def reachable(self, start: int) -> set[int]:
        seen, todo = set(), [start]
        n = len(self.insns)
        while todo:
            pc = todo.pop()
            if pc in seen or pc >= n:
                continue
            seen.add(pc)
            todo.extend(self.successors(pc))
        return seen

    # ---- module ----
    def build(self) -> ir.Module:
        calls = {jump_target(pc, self.insns[pc], f) for pc, f in enumerate(self.forms)
                 if f is not None and f.op == "call_local"}
        starts = [0] + sorted(t for t in calls if t is not None and t != 0)
        # a small subprogram 0 of a program module is emitted straight into bpf_entry's loop (one copy, no
        # call per run, and no LLVM inlining or second simplification of the body); it needs no function
        # (packet programs keep subprogram 0 a function: bpf_run_pkts calls it too)
        inline = (self.kind == "program" and not self.calls_entry and len(self.reachable(0)) <= INLINE_LIMIT
                  and self.prog.prog_type not in PACKET_TYPES)
        for s in starts:
            if s == 0 and inline:
                continue
            fn = ir.Function(self.module, SUB_FN, f"bpf_sub_{s}")
            fn.linkage = "internal"
            self.subs[s] = fn
        sizes = {}
        for s in self.subs:
            sizes[s] = FunctionLowering(self, self.subs[s], s).emit()
        if self.kind == "tail":
            lower_entry.emit_tail_entry(self, self.helper_table)
        else:
            lower_entry.emit_entry(self, (lambda host: FunctionLowering(self, host.fn, 0, host).emit())
                                   if inline else None)
            if inline:
                sizes[0] = len(self.reachable(0))
            if self.prog.prog_type in PACKET_TYPES:          # packet programs: the packet-run loop
                lower_pkt.emit_run_pkts(self)
        self.largest_function = max(sizes.values())
        self.huge = self.largest_function > target.HUGE_FUNCTION or self.longest_block > target.HUGE_BLOCK
        return self.module

    def text(self) -> str:
        """The module as IR text (build() first)."""
        return lower_entry.loop_metadata(str(self.module))

    def native_fn(self, name: str) -> ir.Function:
        fn = self._native_fns.get(name)
        if fn is None:
            fn = self._native_fns[name] = self.native.emit(self.module, name, self.checked)
        return fn


# state slots the function bodies touch (the entry block makes one GEP for each)
_USED_SLOTS = {S.F_KIND, S.F_PC, S.COUNT, S.LIMIT, S.MEM_START, S.MEM_LEN, S.HELPERS}


def _handler_name(f: isa.Form) -> str:
    op = f.op
    if op in ("le", "be", "bswap"):
        return "emit_swap"
    if f.cls in (isa.CLS_ALU, isa.CLS_ALU64):
        return "emit_alu"
    if op.startswith("lock_"):
        return "emit_atomic"
    if op.startswith("lddw"):
        return "emit_lddw"
    if op in isa.COND_JUMPS:
        return "emit_cond_jump"
    return _BY_OP[op]


_LEAVES = frozenset(("exit", "ja", "ja32", "call", "call_btf", "callx", "call_local") + isa.COND_JUMPS)
_BY_OP = {"ja": "emit_ja", "ja32": "emit_ja", "exit": "emit_exit", "ldx": "emit_load", "ldxs": "emit_load",
          "st": "emit_store", "stx": "emit_store", "ldabs": "emit_packet", "ldind": "emit_packet",
          "call_local": "emit_call_local", "call": "emit_call", "call_btf": "emit_call",
          "callx": "emit_callx"}


class FunctionLowering(AluMixin, MemoryMixin, CallMixin):
    """Emits one subprogram (calling convention: lower_abi.SubArgs)."""

    def __init__(self, low: Lowering, fn: ir.Function, start: int, host: Host | None = None):
        self.low = low
        self.fn = fn
        self.start = start
        self.host = host
        args = SubArgs.of(fn) if host is None else host.args
        self.args = args
        self.st = args.st
        # nothing calls pc 0 locally -> subprogram 0 only ever runs at depth 0 (entry or tail-call entry)
        self.depth = c64(0) if start == 0 and not low.calls_entry else args.depth
        self.rows = list(args.rows)
        self.b = ir.IRBuilder(fn.append_basic_block("entry")) if host is None else host.builder
        self._handlers: dict = {}
        self.cold = False

    def slot(self, idx: int):
        """Pointer to a state slot (GEPs made once, at the top of the entry block)."""
        return self._slots[idx]

    # Registers live in allocas between BPF blocks; within a block their current values are SSA values
    # (cache), written back (flush) before control leaves for another block. Faults and returns need no
    # write-back. This keeps the IR small, which is what compile time is mostly spent on.
    def reg(self, r: int):
        v = self.cache.get(r)
        if v is None:
            v = self.cache[r] = self.b.load(self.R[r])
        return v

    def set(self, r: int, v):
        self.cache[r] = v
        self.dirty.add(r)

    def flush(self):
        for r in sorted(self.dirty):
            self.b.store(self.cache[r], self.R[r])
        self.dirty.clear()

    def forget(self):
        self.cache = {}
        self.dirty = set()

    def emit(self) -> int:
        """Emit the function; returns the number of reachable instructions."""
        low, b, host = self.low, self.b, self.host
        eb = b if host is None else host.entry_builder       # what is the same for every run goes here
        self._slots = [eb.gep(self.st, [c64(i)]) if i in _USED_SLOTS else None for i in range(S.NSLOTS)]
        self.R = [eb.alloca(I64, name=f"r{i}") for i in range(NREGS)]
        self.cnt = eb.alloca(I64, name="count")
        self.limit = eb.load(self.slot(S.LIMIT)) if low.metered else None
        for i in range(NREGS):
            b.store(self.args.regs[i], self.R[i])
        b.store(b.load(self.slot(S.COUNT)), self.cnt)
        reach = low.reachable(self.start)
        self.blocks = {pc: self.fn.append_basic_block(f"pc{pc}") for pc in sorted(reach) if pc in low.leader_set}
        term = b.branch(self.blocks[self.start])
        if host is None:
            self._entry_builder = ir.IRBuilder(b.block)
            self._entry_builder.position_before(term)
        else:
            self._entry_builder = host.entry_builder
        self._limits: dict = {}
        self._spans: dict = dict(host.spans) if host is not None else {}
        self._make_exits()
        for pc in sorted(self.blocks):
            b.position_at_end(self.blocks[pc])
            self._emit_block(pc)
        return len(reach)

    def _make_exits(self):
        """Shared exits per function: `fault_ret` returns with the fault already in the state (memory faults
        are recorded by the check functions); `fault_exit` records the packed fault info arriving through one
        phi (one constant per fault site) and returns; `propagate_exit` returns after a callee/helper left a
        fault (setting its pc unless pc is -1)."""
        self.fault_ret = self.fn.append_basic_block("fault_ret")
        fb = ir.IRBuilder(self.fault_ret)
        fb.store(fb.load(self.cnt), self.slot(S.COUNT))
        self.leave(fb, None)
        self.fault_exit = self.fn.append_basic_block("fault_exit")
        fb = ir.IRBuilder(self.fault_exit)
        self.fault_info = fb.phi(I64, name="info")
        fb.call(set_fault_fn(self.low.module), [self.st, self.fault_info, c64(0)])
        fb.branch(self.fault_ret)
        self.prop_exit = self.fn.append_basic_block("propagate_exit")
        pb = ir.IRBuilder(self.prop_exit)
        self.prop_pc = pb.phi(I64, name="pc")
        keep = self.fn.append_basic_block("propagate_keep_pc")
        setpc = self.fn.append_basic_block("propagate_set_pc")
        pb.cbranch(pb.icmp_signed("<", self.prop_pc, c64(0)), keep, setpc)
        pb.position_at_end(setpc)
        pb.store(self.prop_pc, self.slot(S.F_PC))
        pb.branch(keep)
        pb.position_at_end(keep)
        pb.store(pb.load(self.cnt), self.slot(S.COUNT))
        self.leave(pb, None)

    def leave(self, b, regs):
        """Return from the subprogram with r0..r5 = regs (None: after a fault, nothing defined); emitted into
        a host, branch to its exit with r0."""
        if self.host is not None:
            if regs is None and self.host.fault_block is not None:
                b.branch(self.host.fault_block)
                return
            self.host.exit_phi.add_incoming(regs[0] if regs is not None else c64(0), b.block)
            b.branch(self.host.exit_block)
            return
        if regs is None:
            b.ret(ir.Constant(RET, ir.Undefined))
            return
        agg = ir.Constant(RET, ir.Undefined)
        for i, v in enumerate(regs):
            agg = b.insert_value(agg, v, i)
        b.ret(agg)

    def fault_block(self, kind: str, pc: int, code: int | None = None):
        """The fault exit, for a branch about to be emitted from the builder's current block."""
        self.fault_info.add_incoming(c64(fault_info(FAULT_CODE[kind] if code is None else code, pc)), self.b.block)
        return self.fault_exit

    # ---- blocks ----
    def _block_pcs(self, start: int) -> list[int]:
        low = self.low
        pcs, pc, n = [], start, len(low.insns)
        while True:
            pcs.append(pc)
            f = low.forms[pc]
            assert f is not None
            if f.op in ("exit", "ja", "ja32") or f.op in isa.COND_JUMPS:     # the block's own end
                return pcs
            pc += 2 if f.op.startswith("lddw") else 1
            if pc >= n or pc in low.leader_set:
                return pcs

    def _emit_block(self, start: int):
        low, b = self.low, self.b
        self.forget()
        pcs = self._block_pcs(start)
        low.longest_block = max(low.longest_block, len(pcs))
        self.plan = self.plan_block(pcs)
        heads = [pc for pc in pcs if self.plan.get(pc, ("",))[0] == "head"]
        self.cold_entry = {pc: self.fn.append_basic_block(f"pc{pc}_cold") for pc in heads}
        if low.checked and self.polls_at(start):      # runs can be stopped (lower_calls.emit_stop_poll)
            self.emit_stop_poll(start)
        if low.metered:
            c = b.add(b.load(self.cnt), c64(low.costs[start]))
            if start in low.meter_points:
                over = b.icmp_unsigned(">", c, self.limit)
                ok = self.fn.append_basic_block(f"pc{start}_run")
                b.cbranch(over, self.fault_block("insn_limit", start), ok).set_metadata("prof", self.low.weights_cold)
                b.position_at_end(ok)
            b.store(c, self.cnt)
        self.cold = False
        self._emit_range(pcs, heads)

    def _cold_segment(self, pcs, head: int, until: int | None):
        """The cold copy from group head `head` to the next head `until` (None: to the block's end),
        emitted between the fast code around it so that values live into it stay short-lived."""
        b = self.b
        saved = (b.block, self.cache, self.dirty)
        self.cold = True
        b.position_at_end(self.cold_entry[head])
        self.forget()
        self.cold_begin()
        self._emit_range(pcs[pcs.index(head):], until=until)
        self.cold = False
        block, self.cache, self.dirty = saved
        b.position_at_end(block)

    def _emit_range(self, pcs, heads=(), until=None):
        """Emit pcs. Fast code (heads: the block's group heads) emits the cold copy segment by segment as
        it reaches each next head; a cold segment stops at `until`, jumping to that head's cold entry."""
        low, b = self.low, self.b
        prev = heads[0] if heads else None
        for pc in pcs:
            if self.cold and pc == until:       # the next segment of the cold copy: a block boundary
                self.settle()
                self.flush()
                b.branch(self.cold_entry[pc])
                return
            if prev is not None and pc != prev and pc in self.cold_entry and not self.cold:
                self._cold_segment(pcs, prev, pc)
                prev = pc
            f = low.forms[pc]
            if self.cold and f.op in _LEAVES:
                self.settle()
            h = self._handlers.get(f)
            if h is None:
                h = self._handlers[f] = getattr(self, _handler_name(f))
            nxt = h(pc, f, low.insns[pc])
            if nxt is None:        # the instruction ended the block (jump / exit)
                break
        else:
            if not (nxt in low.leader_set or nxt >= len(low.insns)):
                raise LoadError(f"block at {pcs[0]} ends without a successor", pcs[-1])  # pragma: no cover
            self.settle()
            self.flush()
            b.branch(self.blocks[nxt])
        if prev is not None and not self.cold:
            self._cold_segment(pcs, prev, None)


