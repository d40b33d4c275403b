"""The exported entry points of program modules (see lower.MODULE_KINDS):

* `bpf_entry(st) -> r0 of the last run` (module kind "program"): the ONE function a VM's program module
  exports, serving run (one run), run_batch (one run per record) and bench (n runs over one input). Its
  inputs are state slots (ARG_*), so the call from Python passes one pointer. One function on purpose:
  LLVM's fixed cost per function (pass pipeline and code generation, ~0.7 ms each) is what small
  programs pay most.
* `bpf_tail_entry(st, r1, r10) -> r0` (module kind "tail"): the program as the target of a tail call (the
  only entry a prog_array slot's program needs).

The program (subprogram 0) is inlined into bpf_entry's loop when it is small (a per-run call would cost as
much as the program) and called otherwise. After subprogram 0 returns, pending tail calls are chained
natively (the trampoline) and an implicit exit (EXIT0) becomes r0 = 0 with no fault.
"""
from __future__ import annotations

import re

from llvmlite import ir

from ..errors import FAULT_CODE
from . import state as S
from .irlib import I64, I64P, TAIL_ENTRY_FN, VOID, c64
from .lower_abi import Host, SubArgs

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


def signals_after_run(low) -> bool:
    """Can the state's fault slot hold something the entry must look at after a run (a pending tail call or
    an implicit exit) -- else a run that returned normally has no fault."""
    return low.calls_helpers or low.uses_packet


def run_program(low, b, st, r1, r2, r10, rows, emit_inline=None, entry_builder=None, spans=None,
                fault_block=None):
    """One run of subprogram 0 (called, or with emit_inline(host) emitted right here, faults going to
    fault_block unless a tail call or implicit exit must be looked at first), then the tail-call
    trampoline, then EXIT0 turned into r0 = 0. Returns r0; b is left where the run has ended. A tail-call
    target installs its own helper table and used-maps bitmap; both are put back for the next run."""
    fn = b.function
    helpers_slot = _slot(b, st, S.HELPERS)
    saved_helpers = b.load(helpers_slot) if low.calls_helpers else None
    maps_slot = _slot(b, st, S.USED_MAPS)
    saved_maps = b.load(maps_slot) if low.calls_helpers else None
    args = SubArgs.entry(st, r1, r2, r10, rows)
    if emit_inline is None:
        first = b.extract_value(b.call(low.subs[0], args.flat()), 0)
    else:
        exit_block = fn.append_basic_block("program_exit")
        xb = ir.IRBuilder(exit_block)
        first = xb.phi(I64, name="r0")
        emit_inline(Host(fn, b, entry_builder, args, spans, exit_block, first,
                         None if signals_after_run(low) else fault_block))
        b.position_at_end(exit_block)
    if not signals_after_run(low):        # no tail call and no implicit exit possible
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


def emit_tail_entry(low, helper_table: int):
    """bpf_tail_entry(st, r1, r10) -> r0 (r1 = ctx, r2 = 0, fresh frame at r10). Faults and further tail
    calls stay in the state. With helper_table, it installs that Python-helper callback table."""
    fn = ir.Function(low.module, TAIL_ENTRY_FN, "bpf_tail_entry")
    st, r1, r10 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if helper_table:
        b.store(c64(helper_table), _slot(b, st, S.HELPERS))
    res = b.call(low.subs[0], SubArgs.entry(st, r1, c64(0), r10, table_rows(b, st)).flat(),
                 attrs=("alwaysinline",))
    b.ret(b.extract_value(res, 0))


ENTRY_FN = ir.FunctionType(I64, [I64P])


def emit_entry(low, emit_inline=None):
    """bpf_entry(st) -> r0 of the last run: the one exported function of a program module, serving run,
    run_batch and bench. Inputs in state slots (ARG_R1 = r1 of the first run, ARG_R2 = r2 of every run,
    ARG_PERMS, ARG_STRIDE, ARG_COUNT, ARG_OUT, ARG_OMASK, STACK_TOP), so a call passes one pointer; run i
    has r1 = ARG_R1 + i * ARG_STRIDE and writes its r0 to ARG_OUT[i & ARG_OMASK]; it stops at the first
    run that leaves a fault and leaves the number of runs completed in DONE. ONE function: LLVM's cost
    per function (passes and code generation) is what small programs pay most. emit_inline(host): emit
    subprogram 0 into the loop body (else it is called)."""
    fn = ir.Function(low.module, ENTRY_FN, "bpf_entry")
    st = fn.args[0]
    start, entry, head, body, done = (fn.append_basic_block(n) for n in ("start", "entry", "head", "body", "done"))
    b = ir.IRBuilder(start)
    clear_stale_interrupt(low, b, st)
    b.branch(entry)
    b.position_at_end(entry)
    base, length, perms, stride, count, out_addr, omask, r10 = (b.load(_slot(b, st, i)) for i in (
        S.ARG_R1, S.ARG_R2, S.ARG_PERMS, S.ARG_STRIDE, S.ARG_COUNT, S.ARG_OUT, S.ARG_OMASK, S.STACK_TOP))
    ostep = b.and_(omask, c64(8))          # bytes from one result to the next (0: one result slot)
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    # region row 0 and the packet bounds of the first run (every later run rewrites them where something
    # reads them: native helpers, tail-call targets, packet loads); the per-run slots start clean
    for idx, v in ((0, base), (1, b.add(base, length)), (2, perms)):
        b.store(v, b.gep(table, [c64(idx)]))
    for slot, v in ((S.MEM_START, base), (S.MEM_LEN, length), (S.F_KIND, c64(0)), (S.COUNT, c64(0)),
                    (S.TAIL, c64(0))):
        b.store(v, _slot(b, st, slot))
    row1 = table_rows(b, st, (1,))
    spans = {0: length, 1: b.sub(row1[1], row1[0])}
    # The repeat loop is entered at its head (i = 0) or, as far as LLVM can tell, at its latch (i = -1 + 1:
    # the same first run): a cycle with two entries is no natural loop, so LLVM's loop passes (LICM,
    # IndVarSimplify, LSR, rotation ...), which would walk the whole inlined program, leave it alone. The
    # program's own loops inside it are natural loops and optimised as usual.
    latch = fn.append_basic_block(LATCH)
    opaque = b.load(_slot(b, st, S.SCRATCH))
    b.cbranch(b.icmp_unsigned("==", opaque, c64(0x1D1E0000CAFE)), latch, head)
    b.position_at_end(head)
    # run i: r1 = base + i * stride, its result at out_addr + i * ostep (pointers stepped, no multiply)
    i, last, r1, outp = (b.phi(I64) for _ in range(4))
    for phi, v in ((i, c64(0)), (last, c64(0)), (r1, base), (outp, out_addr)):
        phi.add_incoming(v, entry)
    b.cbranch(b.icmp_unsigned("<", i, count), body, done)
    b.position_at_end(body)
    poll_stop_every(low, b, st, i, done)
    r2 = length
    # optimisation barriers like the C baseline's asm volatile: repeated runs over the same input (bench)
    # are neither hoisted nor merged
    b.call(ir.InlineAsm(ir.FunctionType(VOID, [I64]), "", "r,~{memory}", side_effect=True), [r1])
    if low.calls_helpers:
        for idx, v in ((0, r1), (1, b.add(r1, r2)), (2, perms)):
            b.store(v, b.gep(table, [c64(idx)]))
        b.store(c64(0), _slot(b, st, S.TAIL))
        b.store(i, _slot(b, st, S.BATCH_INDEX))
    if low.uses_packet or low.calls_helpers:      # a tail-call target's ldabs reads them too
        b.store(r1, _slot(b, st, S.MEM_START))
        b.store(r2, _slot(b, st, S.MEM_LEN))
    if low.metered:
        b.store(c64(0), _slot(b, st, S.COUNT))
    eb = ir.IRBuilder(entry)
    eb.position_before(entry.terminator)
    r0 = run_program(low, b, st, r1, r2, r10, [r1, b.add(r1, r2), perms] + row1, emit_inline, eb, spans,
                     fault_block=done)
    b.call(ir.InlineAsm(ir.FunctionType(VOID, [I64]), "", "r", side_effect=True), [r0])
    cont = fn.append_basic_block("cont")
    if low.may_signal and (emit_inline is None or signals_after_run(low)):
        faulted = b.icmp_unsigned("!=", b.load(_slot(b, st, S.F_KIND)), c64(0))
        b.cbranch(faulted, done, cont)
    else:
        b.branch(cont)
    b.position_at_end(cont)
    b.store(r0, b.inttoptr(outp, I64P))
    b.branch(latch)
    b.position_at_end(latch)
    # from the entry, the latch is "run -1": stepping it gives run 0 (see above)
    prev = [b.phi(I64) for _ in range(4)]
    for phi, now, before in zip(prev, (i, r0, r1, outp), (c64(-1), c64(0), eb.sub(base, stride),
                                                          eb.sub(out_addr, ostep))):
        phi.add_incoming(now, cont)
        phi.add_incoming(before, entry)
    i.add_incoming(b.add(prev[0], c64(1)), latch)
    last.add_incoming(prev[1], latch)
    r1.add_incoming(b.add(prev[2], stride), latch)
    outp.add_incoming(b.add(prev[3], ostep), latch)
    b.branch(head)
    b.position_at_end(done)
    b.store(i, _slot(b, st, S.DONE))
    b.ret(last)
