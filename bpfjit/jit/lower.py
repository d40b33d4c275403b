"""Lowering of a validated `Program` to an LLVM IR module (llvmlite.ir), llvmbpf style.

Registers are allocas promoted by mem2reg, every basic-block leader (program.leaders) gets an LLVM block,
every BPF subprogram (entry and each local-call target) becomes an internal LLVM function with its own
frame pointer, and LLVM's optimiser does the rest. Where BPF defines a result that LLVM leaves undefined
(division by zero, INT_MIN / -1, oversized shifts) the lowering guards it. In checked mode every memory
access is checked against the run's region table and each block charges the instruction meter on entry,
exactly as the interpreter does; faults are written into the state block (state.py) and unwind by return.
Also emitted here: the exported entry points `bpf_run`, `bpf_batch` (one run per record) and `bpf_bench`.
Compilation and calling live in compiler.py / engine.py.
"""
from __future__ import annotations

from llvmlite import ir

from .. import isa
from ..errors import FAULT_CODE, LoadError
from ..program import Config, Program, block_costs, jump_target, leaders, meter_points
from . import state as S

I1, I8, I16, I32, I64 = (ir.IntType(b) for b in (1, 8, 16, 32, 64))
HOT, COLD = [2000, 1], [1, 2000]        # branch weights: checks pass, faults are rare
I64P = I64.as_pointer()
RET = ir.LiteralStructType([I64] * 6)          # r0..r5 after a subprogram returns
PERM_R, PERM_W, PERM_RW = 1, 2, 3
HELPER_FN = ir.FunctionType(I64, [I64] * 6)    # Python callback: (state address, r1..r5) -> r0
NATIVE_FN = ir.FunctionType(I64, [I64P] + [I64] * 5)
TAIL_ENTRY_FN = ir.FunctionType(I64, [I64P, I64, I64])   # bpf_tail_entry(state, r1, r10) -> r0
# The entry points of each kind of module. Each kind is compiled on first use and holds the program inlined
# into its entry points, so the ordinary compile ("run") has exactly one copy of the program.
MODULE_KINDS = {
    "run": ("bpf_run_mem",),
    "loops": ("bpf_batch", "bpf_bench"),
    "tail": ("bpf_tail_entry",),
}


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v & ((1 << 64) - 1))


def _ity(bits: int) -> ir.IntType:
    return ir.IntType(bits)


# ---- ALU semantics over LLVM values a, b of the operation width (guards where LLVM has UB) ----
def _alu(bld: ir.IRBuilder, op: str, a, b, bits: int):
    t = _ity(bits)
    zero, one, minus1 = ir.Constant(t, 0), ir.Constant(t, 1), ir.Constant(t, -1)
    if op == "add":
        return bld.add(a, b)
    if op == "sub":
        return bld.sub(a, b)
    if op == "mul":
        return bld.mul(a, b)
    if op in ("div", "mod"):
        bz = bld.icmp_unsigned("==", b, zero)
        safe = bld.select(bz, one, b)
        r = bld.udiv(a, safe) if op == "div" else bld.urem(a, safe)
        return bld.select(bz, zero if op == "div" else a, r)
    if op in ("sdiv", "smod"):
        bz = bld.icmp_unsigned("==", b, zero)
        bm1 = bld.icmp_unsigned("==", b, minus1)
        safe = bld.select(bld.or_(bz, bm1), one, b)
        if op == "sdiv":
            r = bld.select(bm1, bld.sub(zero, a), bld.sdiv(a, safe))
            return bld.select(bz, zero, r)
        r = bld.select(bm1, zero, bld.srem(a, safe))
        return bld.select(bz, a, r)
    if op == "or":
        return bld.or_(a, b)
    if op == "and":
        return bld.and_(a, b)
    if op == "xor":
        return bld.xor(a, b)
    if op in ("lsh", "rsh", "arsh"):
        sh = bld.and_(b, ir.Constant(t, bits - 1))
        return {"lsh": bld.shl, "rsh": bld.lshr, "arsh": bld.ashr}[op](a, sh)
    if op == "mov":
        return b
    if op.startswith("movsx"):
        n = int(op[5:])
        return bld.sext(bld.trunc(b, _ity(n)), t) if n < bits else b
    if op == "neg":
        return bld.sub(zero, a)
    raise AssertionError(op)  # pragma: no cover


_ICMP = {"jeq": ("u", "=="), "jne": ("u", "!="), "jgt": ("u", ">"), "jge": ("u", ">="), "jlt": ("u", "<"),
         "jle": ("u", "<="), "jsgt": ("s", ">"), "jsge": ("s", ">="), "jslt": ("s", "<"), "jsle": ("s", "<=")}
_RMW = {"add": "add", "or": "or", "and": "and", "xor": "xor", "xchg": "xchg"}


SKIP_FAST_ROWS = 0x80    # info flag: rows 0 and 1 were checked inline already, scan from row 2


def fault_info(kind_code: int, pc: int, perm: int = 0) -> int:
    """The packed `info` argument of bpf_check_slow / bpf_set_fault: perm | flags | kind << 8 | pc << 16."""
    return perm | (kind_code << 8) | (pc << 16)


def _store_fault(b: ir.IRBuilder, st, info, addr, size) -> None:
    """Write (kind, pc, addr, size) from a packed info word into the state block."""
    b.store(b.and_(b.lshr(info, c64(8)), c64(0xFF)), b.gep(st, [c64(S.F_KIND)]))
    b.store(b.lshr(info, c64(16)), b.gep(st, [c64(S.F_PC)]))
    b.store(addr, b.gep(st, [c64(S.F_ADDR)]))
    b.store(size, b.gep(st, [c64(S.F_SIZE)]))


CHECK_SLOW_FN = ir.FunctionType(I1, [I64P, I64, I64, I64])
SET_FAULT_FN = ir.FunctionType(ir.VoidType(), [I64P, I64, I64])


def _declare(module: ir.Module, name: str, fnty: ir.FunctionType) -> ir.Function:
    """A function of the support module (jit/support.py), declared in `module` and bound at link time."""
    from . import support
    support.ensure()
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, fnty, name)


def region_check_fn(module: ir.Module) -> ir.Function:
    """bpf_check_slow(st, addr, size, info) -> i1: is [addr, addr+size) inside one region of the run's table
    with the permission in info's low bits? When not, and info carries a fault kind (fault_info), the fault
    is recorded in the state. With SKIP_FAST_ROWS the scan starts at row 2 (compiled code checked rows 0 and
    1 from SSA values already, so a batch loop need not keep row 0 in memory current). Compiled once per process (support module) and declared in each module that
    calls it; native helpers also use it (info = perm only) to check pointer arguments."""
    return _declare(module, "bpf_check_slow", CHECK_SLOW_FN)


def set_fault_fn(module: ir.Module) -> ir.Function:
    """bpf_set_fault(st, info, addr): record a fault (cold, out of line, so fault sites stay one call)."""
    return _declare(module, "bpf_set_fault", SET_FAULT_FN)


def define_region_check(module: ir.Module) -> ir.Function:
    """The body of bpf_check_slow (emitted into the support module only)."""
    fn = ir.Function(module, CHECK_SLOW_FN, "bpf_check_slow")
    st, addr, size, info = fn.args
    entry, loop, body, nxt, yes, no, record, fail = (fn.append_basic_block(n) for n in
                                                     ("entry", "loop", "body", "next", "yes", "no", "record",
                                                      "fail"))
    b = ir.IRBuilder(entry)
    perm = b.and_(info, c64(0x7F))
    first = b.select(b.icmp_unsigned("!=", b.and_(info, c64(SKIP_FAST_ROWS)), c64(0)), c64(2), c64(0))
    table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
    n = b.load(b.gep(st, [c64(S.NREGIONS)]))
    end = b.add(addr, size)
    nowrap = b.icmp_unsigned(">=", end, addr)
    b.cbranch(nowrap, loop, no)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(first, entry)
    b.cbranch(b.icmp_unsigned("<", i, n), body, no)
    b.position_at_end(body)
    row = b.mul(i, c64(3))
    lo = b.load(b.gep(table, [row]))
    hi = b.load(b.gep(table, [b.add(row, c64(1))]))
    pm = b.load(b.gep(table, [b.add(row, c64(2))]))
    ok = b.and_(b.and_(b.icmp_unsigned(">=", addr, lo), b.icmp_unsigned("<=", end, hi)),
                b.icmp_unsigned("==", b.and_(pm, perm), perm))
    b.cbranch(ok, yes, nxt)
    b.position_at_end(nxt)
    i.add_incoming(b.add(i, c64(1)), nxt)
    b.branch(loop)
    b.position_at_end(yes)
    b.ret(ir.Constant(I1, 1))
    b.position_at_end(no)
    b.cbranch(b.icmp_unsigned(">=", info, c64(1 << 8)), record, fail)
    b.position_at_end(record)
    _store_fault(b, st, info, addr, size)
    b.branch(fail)
    b.position_at_end(fail)
    b.ret(ir.Constant(I1, 0))
    return fn


def define_set_fault(module: ir.Module) -> ir.Function:
    """The body of bpf_set_fault (emitted into the support module only)."""
    fn = ir.Function(module, SET_FAULT_FN, "bpf_set_fault")
    st, info, addr = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    _store_fault(b, st, info, addr, c64(0))
    b.ret_void()
    return fn


class HelperPlan:
    """How lowered code reaches each helper id: ("native", name) or ("py", slot in the callback table)."""

    def __init__(self, entries: dict[int, tuple[str, object]]):
        self.entries = entries


class Lowering:
    def __init__(self, prog: Program, config: Config, plan: HelperPlan, lddw_values: dict[int, int],
                 native_helpers=None, kind: str = "run", helper_table: int = 0):
        self.kind = kind
        self.helper_table = helper_table     # tail modules install their own Python-helper table
        self.prog = prog
        self.cfg = config
        self.checked = config.checked
        self.metered = config.checked and config.insn_limit is not None
        self.plan = plan
        self.lddw = lddw_values
        self.native = native_helpers
        self.module = ir.Module(name="bpfjit")
        self.insns = prog.insns
        self.forms = prog.forms
        self.leaders = leaders(prog)
        self.leader_set = set(self.leaders)
        self.costs = block_costs(prog)
        self.meter_points = meter_points(prog)
        self.uses_packet = any(f is not None and f.op in ("ldabs", "ldind") for f in self.forms)
        self.calls_helpers = any(f is not None and f.op in ("call", "call_btf", "callx") for f in self.forms)
        # can a run leave anything in the state's fault slot (a fault, an implicit exit, a tail call)?
        self.may_signal = self.checked or self.metered or self.uses_packet or any(
            f is not None and f.op in ("call", "call_btf", "callx", "call_local") for f in self.forms)
        self.calls_entry = any(f is not None and f.op == "call_local" and jump_target(pc, prog.insns[pc], f) == 0
                               for pc, f in enumerate(self.forms))
        self.subs: dict[int, ir.Function] = {}
        self._native_fns: dict[str, ir.Function] = {}

    # ---- analysis ----
    def _successors(self, pc: int) -> list[int]:
        f = self.forms[pc]
        ins = self.insns[pc]
        nxt = pc + (2 if f.op.startswith("lddw") else 1)
        if f.op == "exit":
            return []
        t = jump_target(pc, ins, f)
        if f.op in ("ja", "ja32"):
            return [t]
        if f.op in isa.COND_JUMPS:
            return [nxt, t]
        return [nxt]

    def _reachable(self, start: int) -> set[int]:
        seen, todo = set(), [start]
        while todo:
            pc = todo.pop()
            if pc in seen or pc >= len(self.insns):
                continue
            seen.add(pc)
            todo.extend(self._successors(pc))
        return seen

    # ---- module ----
    def build(self) -> ir.Module:
        starts = [0] + sorted({jump_target(pc, self.insns[pc], f) for pc, f in enumerate(self.forms)
                               if f is not None and f.op == "call_local"} - {0})
        # fn(st, r0..r10, depth, row0 lo/hi/perms, row1 lo/hi/perms): rows 0 and 1 of the region table
        # travel as SSA values (fixed during a run), so bounds are loop-invariant and forward from the entry
        fnty = ir.FunctionType(RET, [I64P] + [I64] * 11 + [I64] + [I64] * 6)
        for s in starts:
            fn = ir.Function(self.module, fnty, f"bpf_sub_{s}")
            fn.linkage = "internal"
            self.subs[s] = fn
        for s in starts:
            _FunctionLowering(self, self.subs[s], s).emit()
        self._emit_entry_points()
        return self.module

    def check_slow_fn(self) -> ir.Function:
        return region_check_fn(self.module)

    def native_fn(self, name: str) -> ir.Function:
        fn = self._native_fns.get(name)
        if fn is None:
            fn = self._native_fns[name] = self.native.emit(self.module, name, self.checked)
        return fn

    def _emit_entry_points(self):
        """The entry points of this module's kind (MODULE_KINDS)."""
        m = self.module
        if self.kind == "tail":
            self._emit_tail_entry()
        elif self.kind == "loops":
            # bpf_batch(st, base, stride, count, r10, out) -> records done (stops at the first fault)
            batch = ir.Function(m, ir.FunctionType(I64, [I64P, I64, I64, I64, I64, I64P]), "bpf_batch")
            st, base, stride, count, r10, out = batch.args
            self._emit_loop(batch, st, count, lambda b, i: (b.add(base, b.mul(i, stride)), stride), r10, out)
            # bpf_bench(st, r1, r2, r10, n) -> last r0 (stops at the first fault)
            bench = ir.Function(m, ir.FunctionType(I64, [I64P, I64, I64, I64, I64]), "bpf_bench")
            st, r1, r2, r10, n = bench.args
            self._emit_loop(bench, st, n, lambda b, i: (r1, r2), r10, None)
        else:
            # bpf_run_mem(st) -> r0: the entry from Python. Inputs are state slots (ARG_R1, ARG_R2, ARG_PERMS,
            # STACK_TOP) so the call passes one pointer; it resets the per-run slots and points region row 0
            # and the packet bounds at [r1, r1 + r2) itself (the stores forward into the program's bounds)
            fast = ir.Function(m, ir.FunctionType(I64, [I64P]), "bpf_run_mem")
            st = fast.args[0]
            b = ir.IRBuilder(fast.append_basic_block("entry"))
            r1, r2, perms, r10 = (b.load(b.gep(st, [c64(i)])) for i in (S.ARG_R1, S.ARG_R2, S.ARG_PERMS,
                                                                          S.STACK_TOP))
            table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
            for idx, v in ((0, r1), (1, b.add(r1, r2)), (2, perms)):
                b.store(v, b.gep(table, [c64(idx)]))
            for slot, v in ((S.MEM_START, r1), (S.MEM_LEN, r2), (S.F_KIND, c64(0)), (S.COUNT, c64(0)),
                            (S.TAIL, c64(0))):
                b.store(v, b.gep(st, [c64(slot)]))
            rows = [r1, b.add(r1, r2), perms] + self._table_rows(b, st, (1,))
            b.ret(self._call_entry(b, st, r1, r2, r10, rows))

    @staticmethod
    def _table_rows(b, st, rows=(0, 1)):
        """Load region rows from the table: [lo, hi, perms] per row, flattened."""
        table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
        return [b.load(b.gep(table, [c64(3 * r + k)])) for r in rows for k in range(3)]

    def _call_entry(self, b, st, r1, r2, r10, rows):
        """Call subprogram 0, then chain pending tail calls natively (the trampoline), then turn an
        implicit exit (EXIT0) into r0 = 0 with no fault."""
        fn = b.function
        helpers_slot = b.gep(st, [c64(S.HELPERS)])
        saved_helpers = b.load(helpers_slot) if self.calls_helpers else None
        res = b.call(self.subs[0], [st, c64(0), r1, r2] + [c64(0)] * 7 + [r10, c64(0)] + list(rows),
                     attrs=("alwaysinline",))
        first = b.extract_value(res, 0)
        if not (self.calls_helpers or self.uses_packet):   # no tail call and no implicit exit possible
            return first
        kslot = b.gep(st, [c64(S.F_KIND)])
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
        target = b.inttoptr(b.load(b.gep(st, [c64(S.TAIL_TARGET)])), TAIL_ENTRY_FN.as_pointer())
        r0.add_incoming(b.call(target, [st, b.load(b.gep(st, [c64(S.TAIL_CTX)])), r10]), hop)
        b.branch(loop)
        b.position_at_end(done)
        if saved_helpers is not None:     # a tail-call target installs its own callback table
            b.store(saved_helpers, helpers_slot)
        is_exit0 = b.icmp_unsigned("==", b.load(kslot), c64(S.EXIT0))
        with b.if_then(is_exit0, likely=False):
            b.store(c64(0), kslot)
        return b.select(is_exit0, c64(0), r0)

    def _emit_tail_entry(self):
        """bpf_tail_entry(st, r1, r10) -> r0: entry of this program as the target of a tail call
        (r1 = ctx, r2 = 0, fresh frame at r10). Faults and further tail calls stay in the state."""
        fn = ir.Function(self.module, TAIL_ENTRY_FN, "bpf_tail_entry")
        st, r1, r10 = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        if self.helper_table:
            b.store(c64(self.helper_table), b.gep(st, [c64(S.HELPERS)]))
        res = b.call(self.subs[0], [st, c64(0), r1] + [c64(0)] * 8 + [r10, c64(0)] + self._table_rows(b, st))
        b.ret(b.extract_value(res, 0))

    def _emit_loop(self, fn, st, count, args_of, r10, out):
        entry, head, body, done, fault = (fn.append_basic_block(n) for n in ("entry", "head", "body", "done",
                                                                           "fault"))
        b = ir.IRBuilder(entry)
        table = b.inttoptr(b.load(b.gep(st, [c64(S.TABLE)])), I64P)
        perms = b.load(b.gep(table, [c64(2)]))
        row1 = self._table_rows(b, st, (1,))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        last = b.phi(I64)
        i.add_incoming(c64(0), entry)
        last.add_incoming(c64(0), entry)
        b.cbranch(b.icmp_unsigned("<", i, count), body, done)
        b.position_at_end(body)
        r1, r2 = args_of(b, i)
        if out is None:
            # bench: an optimisation barrier like the C baseline's (asm volatile with a memory clobber), so
            # that repeated runs over the same input cannot be hoisted out of the loop or merged
            barrier = ir.InlineAsm(ir.FunctionType(ir.VoidType(), [I64]), "", "r,~{memory}", side_effect=True)
            b.call(barrier, [r1])
        # region row 0 (for native helpers' pointer checks and tail-call targets) and the packet bounds of
        # this run; only where something reads them (compiled code's own checks use the SSA rows)
        if self.calls_helpers:
            for idx, v in ((0, r1), (1, b.add(r1, r2)), (2, perms)):
                b.store(v, b.gep(table, [c64(idx)]))
        if self.uses_packet:
            b.store(r1, b.gep(st, [c64(S.MEM_START)]))
            b.store(r2, b.gep(st, [c64(S.MEM_LEN)]))
        if self.metered:
            b.store(c64(0), b.gep(st, [c64(S.COUNT)]))
        if self.calls_helpers:
            b.store(c64(0), b.gep(st, [c64(S.TAIL)]))
            if out is not None:
                b.store(i, b.gep(st, [c64(S.BATCH_INDEX)]))
        r0 = self._call_entry(b, st, r1, r2, r10, [r1, b.add(r1, r2), perms] + row1)
        cont = fn.append_basic_block("cont")
        if self.may_signal:
            faulted = b.icmp_unsigned("!=", b.load(b.gep(st, [c64(S.F_KIND)])), c64(0))
            b.cbranch(faulted, fault, cont)
        else:
            b.branch(cont)
        b.position_at_end(cont)
        if out is not None:
            b.store(r0, b.gep(out, [i]))
        else:   # consume each result (as the C baseline does)
            b.call(ir.InlineAsm(ir.FunctionType(ir.VoidType(), [I64]), "", "r", side_effect=True), [r0])
        i.add_incoming(b.add(i, c64(1)), cont)
        last.add_incoming(r0, cont)
        b.branch(head)
        b.position_at_end(done)
        b.ret(count if out is not None else last)
        b.position_at_end(fault)
        b.ret(i if out is not None else last)


# state slots the function bodies touch (the entry block makes one GEP for each)
_USED_SLOTS = {S.F_KIND, S.F_PC, S.COUNT, S.LIMIT, S.MEM_START, S.MEM_LEN, S.HELPERS}


class _FunctionLowering:
    """Emits one subprogram: fn(st, r0..r9, r10, depth) -> {r0..r5}."""

    def __init__(self, low: Lowering, fn: ir.Function, start: int):
        self.low = low
        self.fn = fn
        self.start = start
        self.st = fn.args[0]
        # nothing calls pc 0 locally -> subprogram 0 only ever runs at depth 0 (entry or tail-call entry)
        self.depth = c64(0) if start == 0 and not low.calls_entry else fn.args[12]
        self.rows = list(fn.args[13:19])
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    # small helpers
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

    def emit(self):
        low, b = self.low, self.b
        self._slots = [b.gep(self.st, [c64(i)]) if i in _USED_SLOTS else None for i in range(S.NSLOTS)]
        self.R = [b.alloca(I64, name=f"r{i}") for i in range(11)]
        self.cnt = b.alloca(I64, name="count")
        for i in range(11):
            b.store(self.fn.args[1 + i], self.R[i])
        b.store(b.load(self.slot(S.COUNT)), self.cnt)
        self.limit = b.load(self.slot(S.LIMIT)) if low.metered else None
        reach = self.low._reachable(self.start)
        if low.checked:
            self._load_fast_regions(self._accesses(reach))
        self.blocks = {pc: self.fn.append_basic_block(f"pc{pc}") for pc in sorted(reach) if pc in low.leader_set}
        b.branch(self.blocks[self.start])
        self._make_exits()
        for pc in sorted(self.blocks):
            b.position_at_end(self.blocks[pc])
            self._emit_block(pc)

    def _make_exits(self):
        """Shared exits per function: `fault_ret` returns with the fault already in the state (memory faults
        are recorded by bpf_check_slow); `fault_exit` records the packed fault info arriving through one phi
        (one constant per fault site) and returns; `propagate_exit` returns after a callee/helper left a
        fault (setting its pc unless pc is -1)."""
        self.fault_ret = self.fn.append_basic_block("fault_ret")
        fb = ir.IRBuilder(self.fault_ret)
        fb.store(fb.load(self.cnt), self.slot(S.COUNT))
        fb.ret(ir.Constant(RET, ir.Undefined))
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
        pb.ret(ir.Constant(RET, ir.Undefined))

    def _accesses(self, reach) -> set[tuple[int, int]]:
        """(permission, size) of every checked memory access among the given instructions."""
        out = set()
        for pc in reach:
            f = self.low.forms[pc]
            if f is None:
                continue
            if f.op in ("ldx", "ldxs", "ldabs", "ldind"):
                out.add((PERM_R, f.width // 8))
            elif f.op in ("st", "stx"):
                out.add((PERM_W, f.width // 8))
            elif f.op.startswith("lock_"):
                out.add((PERM_RW, f.width // 8))
        return out

    def _load_fast_regions(self, accesses):
        """Rows 0 and 1 of the region table (mem/ctx and stack) as SSA values, once per function:
        for each row, permission and access size, (lo, n) such that an access of that size at addr is
        inside the row iff addr - lo <u n (n = number of valid start addresses; 0 if none)."""
        b = self.b
        self.fast: dict[tuple[int, int], list] = {}
        for row in (0, 1):
            lo, hi, pm = self.rows[3 * row:3 * row + 3]
            span = b.sub(hi, lo)
            allowed = {}
            for perm, size in sorted(accesses):
                if perm not in allowed:
                    allowed[perm] = b.icmp_unsigned("==", b.and_(pm, c64(perm)), c64(perm))
                fits = b.and_(allowed[perm], b.icmp_unsigned(">=", span, c64(size)))
                n = b.select(fits, b.sub(span, c64(size - 1)), c64(0))
                self.fast.setdefault((perm, size), []).append((lo, n))

    # ---- faults and returns ----
    def _ret_regs(self, bld):
        agg = ir.Constant(RET, ir.Undefined)
        for i in range(6):
            agg = bld.insert_value(agg, self.reg(i), i)
        return agg

    def fault_block(self, kind: str, pc: int, code: int | None = None):
        """The fault exit, for a branch about to be emitted from the builder's current block."""
        self.fault_info.add_incoming(c64(fault_info(FAULT_CODE[kind] if code is None else code, pc)), self.b.block)
        return self.fault_exit

    def propagate_if_fault(self, pc: int | None = None):
        """After a call: if the state holds a fault, return at once (setting its pc if given)."""
        b = self.b
        bad = b.icmp_unsigned("!=", b.load(self.slot(S.F_KIND)), c64(0))
        cont = self.fn.append_basic_block(f"after_call{len(self.fn.blocks)}")
        self.prop_pc.add_incoming(c64(-1 if pc is None else pc), b.block)
        b.cbranch(bad, self.prop_exit, cont).set_weights(COLD)
        b.position_at_end(cont)

    # ---- blocks ----
    def _emit_block(self, start: int):
        low, b = self.low, self.b
        self.forget()
        if low.metered:
            c = b.add(b.load(self.cnt), c64(low.costs[start]))
            if start in low.meter_points:
                over = b.icmp_unsigned(">", c, self.limit)
                ok = self.fn.append_basic_block(f"pc{start}_run")
                b.cbranch(over, self.fault_block("insn_limit", start), ok).set_weights(COLD)
                b.position_at_end(ok)
            b.store(c, self.cnt)
        pc = start
        while True:
            f = low.forms[pc]
            nxt = self._emit_insn(pc, f)
            if nxt is None:        # the instruction ended the block (jump / exit)
                return
            if nxt in low.leader_set or nxt >= len(low.insns):
                self.flush()
                b.branch(self.blocks[nxt])
                return
            pc = nxt

    # ---- memory ----
    def address(self, base_reg: int, off: int):
        return self.b.add(self.reg(base_reg), c64(off))

    def check(self, addr, size: int, perm: int, kind: str, pc: int, base: int | None = None, off: int = 0):
        """Fault unless [addr, addr+size) lies in one region with `perm`. r10-relative accesses are first
        checked against the stack statically (r10 of a frame at depth d is stack_top - d*stack_size, and r10
        is never written), which folds to a constant where the depth is known; whatever that cannot prove
        goes through the region table like any other access."""
        if not self.low.checked:
            return
        b = self.b
        if base == 10:
            cfg = self.low.cfg
            d = b.mul(self.depth, c64(cfg.stack_size))
            total = cfg.stack_size * cfg.max_call_depth
            in_stack = b.and_(b.icmp_signed("<=", c64(off + size), d),
                              b.icmp_signed(">=", c64(off), b.sub(d, c64(total))))
            general = self.fn.append_basic_block(f"pc{pc}_check")
            done = self.fn.append_basic_block(f"pc{pc}_stack_ok")
            b.cbranch(in_stack, done, general).set_weights(HOT)
            b.position_at_end(general)
            self._check_regions(addr, size, perm, kind, pc, done)
            b.position_at_end(done)
            return
        cont = self.fn.append_basic_block(f"pc{pc}_ok")
        self._check_regions(addr, size, perm, kind, pc, cont)
        b.position_at_end(cont)

    def _check_regions(self, addr, size: int, perm: int, kind: str, pc: int, cont):
        """Branch to cont if the region table allows the access, else to the fault exit."""
        b = self.b
        for i, (lo, n) in enumerate(self.fast[(perm, size)]):     # row 0, then row 1: one compare each
            nxt = self.fn.append_basic_block(f"pc{pc}_row{i + 1}" if i == 0 else f"pc{pc}_slow")
            b.cbranch(b.icmp_unsigned("<", b.sub(addr, lo), n), cont, nxt).set_weights(HOT)
            b.position_at_end(nxt)
        info = c64(fault_info(FAULT_CODE[kind], pc, perm | SKIP_FAST_ROWS))
        good = b.call(self.low.check_slow_fn(), [self.st, addr, c64(size), info])
        b.cbranch(good, cont, self.fault_ret).set_weights(HOT)

    def ptr(self, addr, bits: int):
        return self.b.inttoptr(addr, _ity(bits).as_pointer())

    # ---- instructions; return the next pc, or None when the block ends here ----
    def _emit_insn(self, pc: int, f: isa.Form):
        b, ins = self.b, self.low.insns[pc]
        op = f.op
        d, s = ins.dst, ins.src
        n = pc + 1
        if f.cls in (isa.CLS_ALU, isa.CLS_ALU64) and op not in ("le", "be", "bswap"):
            bits = 64 if f.is64 else 32
            a = self.reg(d)
            bv = self.reg(s) if f.srcreg else c64(ins.imm)
            if bits == 32:
                a, bv = b.trunc(a, I32), b.trunc(bv, I32)
            r = _alu(b, op, a, bv, bits)
            self.set(d, b.zext(r, I64) if bits == 32 else r)
            return n
        if op in ("le", "be", "bswap"):
            v = self.reg(d)
            if f.width < 64:
                v = b.trunc(v, _ity(f.width))
            if op != "le":
                v = b.call(self.low.module.declare_intrinsic("llvm.bswap", [_ity(f.width)]), [v])
            self.set(d, b.zext(v, I64) if f.width < 64 else v)
            return n
        if op in isa.COND_JUMPS:
            bits = 64 if f.is64 else 32
            a = self.reg(d)
            bv = self.reg(s) if f.srcreg else c64(ins.imm)
            if bits == 32:
                a, bv = b.trunc(a, I32), b.trunc(bv, I32)
            if op == "jset":
                cond = b.icmp_unsigned("!=", b.and_(a, bv), ir.Constant(_ity(bits), 0))
            else:
                sign, pred = _ICMP[op]
                cond = (b.icmp_signed if sign == "s" else b.icmp_unsigned)(pred, a, bv)
            self.flush()
            b.cbranch(cond, self.blocks[n + ins.off], self.blocks[n])
            return None
        if op in ("ja", "ja32"):
            self.flush()
            b.branch(self.blocks[jump_target(pc, ins, f)])
            return None
        if op == "exit":
            b.store(b.load(self.cnt), self.slot(S.COUNT))
            b.ret(self._ret_regs(b))
            return None
        if op in ("ldx", "ldxs"):
            addr = self.address(s, ins.off)
            self.check(addr, f.width // 8, PERM_R, "load", pc, s, ins.off)
            v = b.load(self.ptr(addr, f.width), align=1)
            self.set(d, (b.sext if op == "ldxs" else b.zext)(v, I64) if f.width < 64 else v)
            return n
        if op in ("st", "stx"):
            addr = self.address(d, ins.off)
            self.check(addr, f.width // 8, PERM_W, "store", pc, d, ins.off)
            v = self.reg(s) if op == "stx" else c64(ins.imm)
            if f.width < 64:
                v = b.trunc(v, _ity(f.width))
            b.store(v, self.ptr(addr, f.width), align=1)
            return n
        if op.startswith("lock_"):
            return self._atomic(pc, f, ins)
        if op.startswith("lddw"):
            self.set(d, c64(self.low.lddw[pc]))
            return pc + 2
        if op in ("ldabs", "ldind"):
            return self._ld_packet(pc, f, ins)
        if op == "call_local":
            return self._call_local(pc, ins)
        if op in ("call", "call_btf"):
            self._call_helper(pc, self.low.plan.entries[(op, ins.imm)])
            return n
        if op == "callx":
            return self._callx(pc, ins)
        raise LoadError(f"{f.mnemonic} cannot be lowered", pc)  # pragma: no cover

    def _atomic(self, pc, f, ins):
        b = self.b
        bits = f.width
        t = _ity(bits)
        addr = self.address(ins.dst, ins.off)
        self.check(addr, bits // 8, PERM_RW, "atomic", pc, ins.dst, ins.off)
        p = self.ptr(addr, bits)
        name = f.op[len("lock_"):]
        src = self.reg(ins.src)
        src_t = b.trunc(src, t) if bits < 64 else src
        if name == "cmpxchg":
            r0 = self.reg(0)
            exp = b.trunc(r0, t) if bits < 64 else r0
            res = b.cmpxchg(p, exp, src_t, "seq_cst", "seq_cst")
            old = b.extract_value(res, 0)
            self.set(0, b.zext(old, I64) if bits < 64 else old)
            return pc + 1
        fetch = name.startswith("fetch_") or name == "xchg"
        base = name[len("fetch_"):] if name.startswith("fetch_") else name
        old = b.atomic_rmw(_RMW[base], p, src_t, "seq_cst")
        if fetch:
            self.set(ins.src, b.zext(old, I64) if bits < 64 else old)
        return pc + 1

    def _ld_packet(self, pc, f, ins):
        b = self.b
        nbytes = f.width // 8
        o = c64(ins.imm) if f.op == "ldabs" else b.add(self.reg(ins.src), c64(ins.imm))
        o = b.sext(b.trunc(o, I32), I64)
        mem_len = b.load(self.slot(S.MEM_LEN))
        bad = b.or_(b.icmp_signed("<", o, c64(0)), b.icmp_signed(">", b.add(o, c64(nbytes)), mem_len))
        cont = self.fn.append_basic_block(f"pc{pc}_pkt")
        b.cbranch(bad, self.fault_block("none", pc, code=S.EXIT0), cont).set_weights(COLD)
        b.position_at_end(cont)
        addr = b.add(b.load(self.slot(S.MEM_START)), o)
        self.check(addr, nbytes, PERM_R, "load", pc)
        v = b.load(self.ptr(addr, f.width), align=1)
        if nbytes > 1:
            v = b.call(self.low.module.declare_intrinsic("llvm.bswap", [_ity(f.width)]), [v])
        self.set(0, b.zext(v, I64))
        return pc + 1

    def _call_local(self, pc, ins):
        b, low = self.b, self.low
        target = pc + 1 + ins.imm
        too_deep = b.icmp_unsigned(">=", b.add(self.depth, c64(1)), c64(low.cfg.max_call_depth))
        cont = self.fn.append_basic_block(f"pc{pc}_call")
        b.cbranch(too_deep, self.fault_block("call_depth", pc), cont).set_weights(COLD)
        b.position_at_end(cont)
        b.store(b.load(self.cnt), self.slot(S.COUNT))
        args = [self.st] + [self.reg(i) for i in range(10)] + \
               [b.sub(self.reg(10), c64(low.cfg.stack_size)), b.add(self.depth, c64(1))] + self.rows
        res = b.call(low.subs[target], args)
        b.store(b.load(self.slot(S.COUNT)), self.cnt)
        self.propagate_if_fault()
        for i in range(6):
            self.set(i, b.extract_value(res, i))
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

    def _callx(self, pc, ins):
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
