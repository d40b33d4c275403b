"""The exported entry points of a program module (all in ONE module, see lower.ENTRY_POINTS):

* `bpf_run_mem(st) -> r0`: the entry from Python; inputs in state slots (ARG_R1, ARG_R2, ARG_PERMS,
  STACK_TOP), so the call passes one pointer; resets the per-run slots and points region row 0 and the
  packet bounds at [r1, r1 + r2);
* `bpf_batch(st, base, stride, count, r10, out) -> records done` and `bpf_bench(st, r1, r2, r10, n) -> last
  r0`: native repeat loops (stop at the first fault), one function each so each is specialised;
* `bpf_tail_entry(st, r1, r10) -> r0`: the program as the target of a tail call.

The program (subprogram 0) is inlined into the loops when it is small (the per-run call would cost as much
as the program: three copies of a small program) and called otherwise (one copy of a large program). After subprogram 0
returns, pending tail calls are chained natively (the trampoline) and an implicit exit (EXIT0) becomes
r0 = 0 with no fault.
"""
from __future__ import annotations

import re

from llvmlite import ir

from ..errors import FAULT_CODE
from . import state as S
from .irlib import I64, I64P, TAIL_ENTRY_FN, VOID, c64
from .lower_abi import SubArgs

LATCH = "loop_latch"      # the repeat loop's back edge (see loop_metadata)


_LATCH_BR = re.compile("(" + LATCH + r':\n(?:  [^\n]*\n)*?  br label %"head")')


def loop_metadata(text: str) -> str:
    """IR text with the repeat loop marked "do not unroll, do not vectorise" (one run per iteration, as
    in the C baseline's loop). llvmlite cannot build the self-referencing loop id, so it is added to the
    text: the branch of the block LATCH gets `!llvm.loop`."""
    text, n = _LATCH_BR.subn(r"\1, !llvm.loop !9000", text, count=1)
    if not n:
        return text
    return text + ('\n!9000 = distinct !{!9000, !9001, !9002}\n!9001 = !{!"llvm.loop.unroll.disable"}\n'
                   '!9002 = !{!"llvm.loop.vectorize.enable", i1 false}\n')


def _slot(b, st, idx):
    return b.gep(st, [c64(idx)])


def table_rows(b, st, rows=(0, 1)):
    """Load region rows from the table: [lo, hi, perms] per row, flattened."""
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    return [b.load(b.gep(table, [c64(3 * r + k)])) for r in rows for k in range(3)]


# ---- safety (issue 8): stop requests and used maps; kept apart from the rest of the entry code ----
def clear_stale_interrupt(low, b, st) -> None:
    """Checked code: a Ctrl-C request (STOP_INTERRUPT) left in the state from before this call is stale (Python
    raised its KeyboardInterrupt already); a timeout request (STOP_TIMEOUT) stays. A load, and only for a stale
    one a cmpxchg, so a request the watchdog writes meanwhile is never lost."""
    if low.checked:
        slot = _slot(b, st, S.STOP)
        stale = b.icmp_unsigned("==", b.load_atomic(slot, "monotonic", 8), c64(S.STOP_INTERRUPT))
        with b.if_then(stale, likely=False):
            b.cmpxchg(slot, c64(S.STOP_INTERRUPT), c64(0), "monotonic", "monotonic")


STOP_POLL_EVERY = 64      # checked batch/bench loops test STOP before every 64th run (a power of two)


def poll_stop_every(low, b, st, i, fault) -> None:
    """Checked code: before run i of a batch/bench loop with i % STOP_POLL_EVERY == 0, leave through `fault`
    with F_KIND = timeout (pc 0; the record not run) when a stop is requested. Loop-free programs have no
    poll of their own; loops poll at their heads (lower_calls.emit_stop_poll)."""
    if not low.checked:
        return
    fn = b.function
    check, stopped, go = (fn.append_basic_block(n) for n in ("stop_check", "stop_requested", "stop_go"))
    b.cbranch(b.icmp_unsigned("==", b.and_(i, c64(STOP_POLL_EVERY - 1)), c64(0)), check, go)
    b.position_at_end(check)
    stop = b.load_atomic(_slot(b, st, S.STOP), "monotonic", 8)
    b.cbranch(b.icmp_unsigned("!=", stop, c64(0)), stopped, go)
    b.position_at_end(stopped)
    b.store(c64(FAULT_CODE["timeout"]), _slot(b, st, S.F_KIND))
    b.store(c64(0), _slot(b, st, S.F_PC))
    b.branch(fault)
    b.position_at_end(go)


def call_program(low, b, st, r1, r2, r10, rows, inline: bool):
    """Call subprogram 0, then the tail-call trampoline, then turn EXIT0 into r0 = 0. A tail-call target
    installs its own helper table and used-maps bitmap; both are put back for the next run."""
    fn = b.function
    helpers_slot = _slot(b, st, S.HELPERS)
    saved_helpers = b.load(helpers_slot) if low.calls_helpers else None
    maps_slot = _slot(b, st, S.USED_MAPS)
    saved_maps = b.load(maps_slot) if low.calls_helpers else None
    res = b.call(low.subs[0], SubArgs.entry(st, r1, r2, r10, rows).flat(),
                 attrs=("alwaysinline",) if inline else ("noinline",))
    first = b.extract_value(res, 0)
    if not (low.calls_helpers or low.uses_packet):   # no tail call and no implicit exit possible
        return first
    kslot = _slot(b, st, S.F_KIND)
    pre = b.block
    loop = fn.append_basic_block("tail_check")
    hop = fn.append_basic_block("tail_hop")
    done = fn.append_basic_block("tail_done")
    b.branch(loop)
    b.position_at_end(loop)
    r0 = b.phi(I64)
    r0.add_incoming(first, pre)
    b.cbranch(b.icmp_unsigned("==", b.load(kslot), c64(S.TAILCALL)), hop, done)
    b.position_at_end(hop)
    b.store(c64(0), kslot)
    target = b.inttoptr(b.load(_slot(b, st, S.TAIL_TARGET)), TAIL_ENTRY_FN.as_pointer())
    r0.add_incoming(b.call(target, [st, b.load(_slot(b, st, S.TAIL_CTX)), r10]), hop)
    b.branch(loop)
    b.position_at_end(done)
    if saved_helpers is not None:     # a tail-call target installs its own callback table and used maps
        b.store(saved_helpers, helpers_slot)
        b.store(saved_maps, maps_slot)
    is_exit0 = b.icmp_unsigned("==", b.load(kslot), c64(S.EXIT0))
    with b.if_then(is_exit0, likely=False):
        b.store(c64(0), kslot)
    return b.select(is_exit0, c64(0), r0)


def emit_run_mem(low):
    fast = ir.Function(low.module, ir.FunctionType(I64, [I64P]), "bpf_run_mem")
    st = fast.args[0]
    b = ir.IRBuilder(fast.append_basic_block("entry"))
    r1, r2, perms, r10 = (b.load(_slot(b, st, i)) for i in (S.ARG_R1, S.ARG_R2, S.ARG_PERMS, S.STACK_TOP))
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    for idx, v in ((0, r1), (1, b.add(r1, r2)), (2, perms)):
        b.store(v, b.gep(table, [c64(idx)]))
    clear_stale_interrupt(low, b, st)
    for slot, v in ((S.MEM_START, r1), (S.MEM_LEN, r2), (S.F_KIND, c64(0)), (S.COUNT, c64(0)),
                    (S.TAIL, c64(0))):
        b.store(v, _slot(b, st, slot))
    rows = [r1, b.add(r1, r2), perms] + table_rows(b, st, (1,))
    b.ret(call_program(low, b, st, r1, r2, r10, rows, inline=False))


def emit_tail_entry(low, helper_table: int):
    """bpf_tail_entry(st, r1, r10) -> r0 (r1 = ctx, r2 = 0, fresh frame at r10). Faults and further tail
    calls stay in the state. With helper_table, it installs that Python-helper callback table."""
    fn = ir.Function(low.module, TAIL_ENTRY_FN, "bpf_tail_entry")
    st, r1, r10 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if helper_table:
        b.store(c64(helper_table), _slot(b, st, S.HELPERS))
    res = b.call(low.subs[0], SubArgs.entry(st, r1, c64(0), r10, table_rows(b, st)).flat(), attrs=("noinline",))
    b.ret(b.extract_value(res, 0))


def emit_loops(low, inline: bool):
    m = low.module
    # bpf_batch(st, base, stride, count, r10, out) -> records done
    batch = ir.Function(m, ir.FunctionType(I64, [I64P, I64, I64, I64, I64, I64P]), "bpf_batch")
    st, base, stride, count, r10, out = batch.args
    _emit_loop(low, batch, inline, st, base, stride, stride, count, r10, out)
    # bpf_bench(st, r1, r2, r10, n) -> last r0
    bench = ir.Function(m, ir.FunctionType(I64, [I64P, I64, I64, I64, I64]), "bpf_bench")
    st, r1, r2, r10, n = bench.args
    _emit_loop(low, bench, inline, st, r1, c64(0), r2, n, r10, None)


def _emit_loop(low, fn, inline: bool, st, base, stride, length, count, r10, out):
    """One run per i < count with r1 = base + i * stride, r2 = length; results to out[i] (batch) or
    consumed (bench, out None: an optimisation barrier like the C baseline's asm volatile, so that repeated
    runs over the same input are neither hoisted nor merged). Returns records done (batch) / the last r0
    (bench)."""
    entry, head, body, done, fault = (fn.append_basic_block(n) for n in ("entry", "head", "body", "done",
                                                                       "fault"))
    b = ir.IRBuilder(entry)
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    perms = b.load(b.gep(table, [c64(2)]))
    row1 = table_rows(b, st, (1,))
    is_bench = out is None
    clear_stale_interrupt(low, b, st)
    pre = b.block                  # the entry block, or the block after clear_stale_interrupt's branch
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    last = b.phi(I64)
    i.add_incoming(c64(0), pre)
    last.add_incoming(c64(0), pre)
    b.cbranch(b.icmp_unsigned("<", i, count), body, done)
    b.position_at_end(body)
    poll_stop_every(low, b, st, i, fault)
    r1, r2 = b.add(base, b.mul(i, stride)), length
    if is_bench:
        barrier = ir.InlineAsm(ir.FunctionType(VOID, [I64]), "", "r,~{memory}", side_effect=True)
        b.call(barrier, [r1])
    # region row 0 (for native helpers' pointer checks and tail-call targets) and the packet bounds of
    # this run; only where something reads them (compiled code's own checks use the SSA rows)
    if low.calls_helpers:
        for idx, v in ((0, r1), (1, b.add(r1, r2)), (2, perms)):
            b.store(v, b.gep(table, [c64(idx)]))
    if low.uses_packet or low.calls_helpers:      # a tail-call target's ldabs reads them too
        b.store(r1, _slot(b, st, S.MEM_START))
        b.store(r2, _slot(b, st, S.MEM_LEN))
    if low.metered:
        b.store(c64(0), _slot(b, st, S.COUNT))
    if low.calls_helpers:
        b.store(c64(0), _slot(b, st, S.TAIL))
        if not is_bench:
            b.store(i, _slot(b, st, S.BATCH_INDEX))
    r0 = call_program(low, b, st, r1, r2, r10, [r1, b.add(r1, r2), perms] + row1, inline)
    cont = fn.append_basic_block("cont")
    if low.may_signal:
        faulted = b.icmp_unsigned("!=", b.load(_slot(b, st, S.F_KIND)), c64(0))
        b.cbranch(faulted, fault, cont)
    else:
        b.branch(cont)
    b.position_at_end(cont)
    if is_bench:
        b.call(ir.InlineAsm(ir.FunctionType(VOID, [I64]), "", "r", side_effect=True), [r0])
    else:
        b.store(r0, b.gep(out, [i]))
    latch = fn.append_basic_block(LATCH)
    b.branch(latch)
    b.position_at_end(latch)
    i.add_incoming(b.add(i, c64(1)), latch)
    last.add_incoming(r0, latch)
    b.branch(head)
    b.position_at_end(done)
    b.ret(last if is_bench else count)
    b.position_at_end(fault)
    b.ret(last if is_bench else i)
