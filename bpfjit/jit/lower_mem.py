"""Lowering of memory instructions and their checks (a mixin of lower.FunctionLowering): loads, stores,
atomics, legacy packet loads, and in checked mode the bounds checks, planned per basic block.

The check plan of a block (`plan_block`) sorts its accesses:
* static: r10-relative inside the frame's own stack_size bytes below r10 (r10 is never written and the
  depth is always below max_call_depth, so the access is inside the stack region at any depth): no code;
* grouped: the accesses through one base register value (the register not written between them). The
  first one (the head) checks the whole range [base+min off, base+max end) against rows 0 and 1 of the
  region table (SSA values) with the union of the permissions: one compare per row and one branch. The
  other members need no code. When the range check fails (the accesses touch another region, or one of
  them faults), control goes to the block's COLD COPY, entered at that head: the rest of the block lowered
  again, straight-line, with every access checked on its own by one call (support.bpf_cold_addr). After
  the first failing check the copy is "poisoned": later checks record nothing and later accesses go to a
  scratch slot, and before anything that leaves the block (jump, exit, call, packet load) a failure
  returns through the fault exit. So a fault has the interpreter's pc, address and size, and every store
  before it has happened.
Legacy packet loads are checked on their own (rows 0 and 1 inline, then bpf_check_slow from row 2).
Every check is a constant number of instructions, the cold copy adds no branch per access, and no chain
of compares on one value grows with the block: LLVM's value-propagation passes stay linear.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FAULT_CODE
from ..progtypes import PACKET_TYPES
from . import state as S
from .irlib import (I32, I64, PERM_R, PERM_RW, PERM_W, SKIP_FAST_ROWS, c64, cold_addr_fn,
                    fault_info, ity, region_check_fn)

MAX_GROUP = 64     # accesses per group: the group checks also bound the size of LLVM's blocks (code
                   # generation is quadratic in the memory operations of one block)
ACCESS_KIND = {PERM_R: "load", PERM_W: "store", PERM_RW: "atomic"}
_RMW = {"add": "add", "or": "or", "and": "and", "xor": "xor", "xchg": "xchg"}


def access_of(f, ins):
    """(base register, offset, size, permission) of a checked load/store/atomic, else None."""
    op = f.op
    if op in ("ldx", "ldxs"):
        return ins.src, ins.off, f.width // 8, PERM_R
    if op in ("st", "stx"):
        return ins.dst, ins.off, f.width // 8, PERM_W
    if op.startswith("lock_"):
        return ins.dst, ins.off, f.width // 8, PERM_RW
    return None


def written_regs(f, ins) -> tuple:
    """Registers an instruction inside a basic block may write (conservative)."""
    op = f.op
    if op in ("st", "stx"):
        return ()
    if op.startswith("lock_"):
        return (ins.src, 0)
    if op in ("ldabs", "ldind"):
        return (0,)
    return (ins.dst,)


@dataclass
class Group:
    base: int
    members: list = field(default_factory=list)      # pcs
    lo: int = 0
    hi: int = 0
    perm: int = 0

    def add(self, pc, off, size, perm):
        if not self.members:
            self.lo, self.hi = off, off + size
        self.lo, self.hi = min(self.lo, off), max(self.hi, off + size)
        self.perm |= perm
        self.members.append(pc)


class MemoryMixin:
    if TYPE_CHECKING:       # a mixin: every other attribute is the FunctionLowering (lower.py)'s
        def __getattr__(self, name: str) -> Any: ...
    # ---- the check plan ----
    def plan_block(self, pcs) -> dict:
        """pc -> ("static",) | ("head", Group) | ("member", Group) for the accesses of a block (a group may
        have one member)."""
        low = self.low
        plan: dict = {}
        if not low.checked:
            return plan
        ss = low.cfg.stack_size
        open_groups: dict[int, Group] = {}
        groups = []
        for pc in pcs:
            f, ins = low.forms[pc], low.insns[pc]
            acc = access_of(f, ins)
            if acc is not None:
                base, off, size, perm = acc
                if base == 10 and -ss <= off and off + size <= 0:
                    plan[pc] = ("static",)
                else:
                    g = open_groups.get(base)
                    if g is None:
                        g = open_groups[base] = Group(base)
                        groups.append(g)
                    g.add(pc, off, size, perm)
                    if len(g.members) >= MAX_GROUP:
                        del open_groups[base]
            for r in written_regs(f, ins):
                open_groups.pop(r, None)
        for g in groups:
            plan[g.members[0]] = ("head", g)
            for pc in g.members[1:]:
                plan[pc] = ("member", g)
        return plan

    # ---- fast-row limits, computed once per function in its entry block ----
    def _row_limit(self, row: int, perm: int, extent: int):
        """n such that an access of `extent` bytes with `perm` at addr lies in region row `row` iff
        addr - lo <u n (0 if none can)."""
        key = (row, perm, extent)
        n = self._limits.get(key)
        if n is None:
            b = self._entry_builder
            lo, hi, pm = self.rows[3 * row:3 * row + 3]
            span = self._spans.get(row)
            if span is None:
                span = self._spans[row] = b.sub(hi, lo)
            allowed = b.icmp_unsigned("==", b.and_(pm, c64(perm)), c64(perm))
            fits = b.and_(allowed, b.icmp_unsigned(">=", span, c64(extent)))
            n = self._limits[key] = b.select(fits, b.sub(span, c64(extent - 1)), c64(0))
        return n

    # ---- checks ----
    def check_access(self, pc: int, addr, size: int, perm: int):
        """Emit what the block's plan asks for the access at pc (nothing in unchecked mode). Returns the
        pointer to access (the scratch slot once the cold copy is poisoned), or None for ptr(addr)."""
        if not self.low.checked:
            return None
        role = self.plan.get(pc, ("static",))
        kind = role[0]
        if self.cold and (kind != "static" or self.checked_since):   # (poisoned: no effect after a fault)
            return self._check_poisoned(pc, addr, size, perm)
        if kind == "static":
            return None
        if kind == "head":
            g = role[1]
            b = self.b
            start = addr if g.lo == self.low.insns[pc].off else b.add(self.reg(g.base), c64(g.lo))
            self.flush()
            cont = self.fn.append_basic_block(f"pc{pc}_grp")
            row1 = self.fn.append_basic_block(f"pc{pc}_row1")
            for row, fail in ((0, row1), (1, self.cold_entry[pc])):     # row 0, then row 1: one compare each
                ok = b.icmp_unsigned("<", b.sub(start, self.rows[3 * row]), self._row_limit(row, g.perm, g.hi - g.lo))
                b.cbranch(ok, cont, fail).set_metadata("prof", self.low.weights_hot)
                b.position_at_end(fail if row == 0 else cont)
        return None

    # ---- the cold copy ----
    def cold_begin(self):
        """At an entry of the cold copy: no check made yet on this stretch."""
        self.checked_since = False

    def settle(self):
        """Before the block is left (or a packet load may leave it): return through the fault exit if a
        check of the cold copy failed (the state holds its fault; F_KIND is 0 while a block runs)."""
        if not self.cold or not self.checked_since:
            return
        b = self.b
        failed = b.icmp_unsigned("!=", b.load(self.slot(S.F_KIND)), c64(0))
        cont = self.fn.append_basic_block(f"settled{len(self.fn.blocks)}")
        b.cbranch(failed, self.fault_ret, cont).set_metadata("prof", self.low.weights_cold)
        b.position_at_end(cont)
        self.checked_since = False

    def _check_poisoned(self, pc, addr, size, perm):
        b = self.b
        info = c64(fault_info(FAULT_CODE[ACCESS_KIND[perm]], pc, perm))
        a = b.call(cold_addr_fn(self.low.module), [self.st, addr, c64(size), info] + list(self.rows[:3]))
        self.checked_since = True
        return b.inttoptr(a, ity(8 * size).as_pointer())

    def _check_inline(self, pc, addr, size, perm):
        """Rows 0 and 1 inline, then bpf_check_slow from row 2 out of line."""
        b = self.b
        cont = self.fn.append_basic_block(f"pc{pc}_ok")
        row1 = self.fn.append_basic_block(f"pc{pc}_row1")
        slow = self.fn.append_basic_block(f"pc{pc}_slow")
        for row, fail in ((0, row1), (1, slow)):
            ok = b.icmp_unsigned("<", b.sub(addr, self.rows[3 * row]), self._row_limit(row, perm, size))
            b.cbranch(ok, cont, fail).set_metadata("prof", self.low.weights_hot)
            b.position_at_end(fail)
        info = c64(fault_info(FAULT_CODE[ACCESS_KIND[perm]], pc, perm | SKIP_FAST_ROWS))
        good = b.call(region_check_fn(self.low.module), [self.st, addr, c64(size), info])
        b.cbranch(good, cont, self.fault_ret).set_metadata("prof", self.low.weights_hot)
        b.position_at_end(cont)

    # ---- instructions ----
    def address(self, base_reg: int, off: int):
        return self.b.add(self.reg(base_reg), c64(off))

    def ptr(self, addr, bits: int):
        return self.b.inttoptr(addr, ity(bits).as_pointer())

    def emit_load(self, pc, f, ins):
        b = self.b
        addr = self.address(ins.src, ins.off)
        p = self.check_access(pc, addr, f.width // 8, PERM_R) or self.ptr(addr, f.width)
        v = b.load(p, align=1)
        self.set(ins.dst, (b.sext if f.op == "ldxs" else b.zext)(v, I64) if f.width < 64 else v)
        return pc + 1

    def emit_store(self, pc, f, ins):
        b = self.b
        addr = self.address(ins.dst, ins.off)
        p = self.check_access(pc, addr, f.width // 8, PERM_W) or self.ptr(addr, f.width)
        v = self.reg(ins.src) if f.op == "stx" else c64(ins.imm)
        if f.width < 64:
            v = b.trunc(v, ity(f.width))
        b.store(v, p, align=1)
        return pc + 1

    def emit_atomic(self, pc, f, ins):
        b = self.b
        bits = f.width
        t = ity(bits)
        addr = self.address(ins.dst, ins.off)
        p = self.check_access(pc, addr, bits // 8, PERM_RW) or self.ptr(addr, bits)
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

    def _skf_offset(self, o):
        """A negative LD_ABS/LD_IND offset of a packet program, relative to the network / link-layer header."""
        from ..packets import net_header_off
        from ..progtypes import PACKET_TYPES, SKF_LL_OFF, SKF_NET_OFF
        b = self.b
        nh = net_header_off(PACKET_TYPES[self.low.prog.prog_type])
        net = b.and_(b.icmp_signed(">=", o, c64(SKF_NET_OFF)), b.icmp_signed("<", o, c64(0)))
        ll = b.and_(b.icmp_signed(">=", o, c64(SKF_LL_OFF)), b.icmp_signed("<", o, c64(SKF_NET_OFF)))
        return b.select(net, b.add(o, c64(nh - SKF_NET_OFF)), b.select(ll, b.sub(o, c64(SKF_LL_OFF)), o))

    def emit_packet(self, pc, f, ins):
        """Legacy LD_ABS / LD_IND: out of the packet ends the program with r0 = 0 (EXIT0)."""
        self.settle()
        b = self.b
        nbytes = f.width // 8
        o = c64(ins.imm) if f.op == "ldabs" else b.add(self.reg(ins.src), c64(ins.imm))
        o = b.sext(b.trunc(o, I32), I64)
        if self.low.prog.prog_type in PACKET_TYPES:     # SKF_NET_OFF / SKF_LL_OFF relative (packets.py)
            o = self._skf_offset(o)
        mem_len = b.load(self.slot(S.MEM_LEN))
        bad = b.or_(b.icmp_signed("<", o, c64(0)), b.icmp_signed(">", b.add(o, c64(nbytes)), mem_len))
        cont = self.fn.append_basic_block(f"pc{pc}_pkt")
        b.cbranch(bad, self.fault_block("none", pc, code=S.EXIT0), cont).set_metadata("prof", self.low.weights_cold)
        b.position_at_end(cont)
        addr = b.add(b.load(self.slot(S.MEM_START)), o)
        if self.low.checked:
            self._check_inline(pc, addr, nbytes, PERM_R)
        v = b.load(self.ptr(addr, f.width), align=1)
        if nbytes > 1:
            v = b.call(self.low.module.declare_intrinsic("llvm.bswap", [ity(f.width)]), [v])
        self.set(0, b.zext(v, I64))
        return pc + 1
