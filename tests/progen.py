"""Random well-formed, terminating BPF programs, and the harness that runs one in both engines and compares.

What lives here:
- `Source`s of random choices: `RandomSource` (a `random.Random`, for tests/fuzz_engines.py) and `DrawSource`
  (a hypothesis `draw`, for tests/test_differential.py). One generator (`Generator`) reads either.
- `Generator`: builds a `Case` (program slots, Config, mem length and contents). It is driven by the ISA table:
  every `isa.FORMS` row maps to a category (`category`), and each category has one emitter. A new row that
  fits no category makes this module fail at import, so the generator cannot silently fall behind the ISA.
- `FUZZ_HELPERS` (helper 5 ktime_get_ns plus a deterministic Python helper callable by id, BTF id and callx)
  and `StubRuntime` (resolves lddw pseudo sources to constants), which generated programs may need.
- The differential harness: `run_engine`, `run_case`, `compare`, `self_check`, and `to_data` (a .data
  reproducer).
What must not live here: engine code, pytest tests, campaign driving (see tests/fuzz_engines.py).

Generator invariants (docs/fuzzing.md has the long version): every register has a static kind: DATA
(a value that is identical in every run of the program), a pointer `("mem"|"stk", lo, hi)` with a known
offset range from mem start / the frame's r10, or UNK. Only DATA registers are read as values (ALU sources,
jump operands, stored values, helper arguments, r0 at exit), so no pointer and no helper-5 timestamp can
reach r0 or memory. Memory accesses use pointer bases and stay inside their region or overlap it by at
most 7 bytes (never enough to land in a neighbouring heap block). Jumps go forward except the back edge of
counter loops; local calls go to higher-numbered subprograms only; a static bound on executed instructions
keeps every program cheap. r9 holds the mem pointer everywhere and is never written after the prologue.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from bpfjit import VM, Config, Program, RuntimeFault, isa
from bpfjit.helpers import Helper, HelperRegistry
from bpfjit.helpers.builtin import ktime_get_ns
from bpfjit.isa import Insn, to_s16, to_s32
from bpfjit.runtime import Runtime
from bpfjit.vm import thread_stack

M64 = (1 << 64) - 1
DATA, UNK = "d", "?"
MEM, STK = "mem", "stk"
OOB = 7                  # how far (bytes) an access may stick out of its region: less than any heap gap
MAX_LOOP = 300


# --------------------------------------------------------------------------------------------- sources
class RandomSource:
    """Random choices from a `random.Random`."""

    def __init__(self, rnd: random.Random):
        self.r = rnd

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def bytes(self, n: int) -> bytes:
        return self.r.randbytes(n)


class DrawSource:
    """Random choices from a hypothesis `draw`; every choice shrinks towards the first/smallest/False."""

    def __init__(self, draw):
        from hypothesis import strategies as st
        self.draw, self.st = draw, st

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def pick(self, seq):
        return self.draw(self.st.sampled_from(seq))

    def chance(self, p: float) -> bool:
        return self.draw(self.st.integers(0, 999)) >= 1000 - round(p * 1000)

    def bytes(self, n: int) -> bytes:
        return self.draw(self.st.binary(min_size=n, max_size=n))


def weighted(src, pairs):
    """One item of [(item, weight)] chosen with probability proportional to weight."""
    x = src.int(0, sum(w for _, w in pairs) - 1)
    for item, w in pairs:
        if x < w:
            return item
        x -= w
    raise AssertionError  # pragma: no cover


# ---------------------------------------------------------------------------- helpers, runtime stub
MIX_ID, MIX_BTF = 1000, 7000
MIX_FAULT = 0xBAD          # r1 & 0xFFF == MIX_FAULT makes fuzz_mix raise (a "helper" fault)


def fuzz_mix(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Deterministic Python helper (a ctypes callback in the JIT): depends on r1 and r2 only."""
    if r1 & 0xFFF == MIX_FAULT:
        raise ValueError("fuzz_mix: poisoned argument")
    return ((r1 * 0x9E3779B97F4A7C15) ^ (r2 >> 3) ^ 0x5555) & M64


FUZZ_HELPERS = HelperRegistry([
    Helper(5, "ktime_get_ns", ktime_get_ns, (), "integer", native="ktime_get_ns"),
    Helper(MIX_ID, "fuzz_mix", fuzz_mix, ("anything", "anything"), "integer", btf_id=MIX_BTF),
])
HELPER_IDS = tuple(h.id for h in FUZZ_HELPERS)


class StubRuntime(Runtime):
    """The real Runtime with no maps, resolving every lddw pseudo source to a constant (not an address):
    the generated programs then treat the value as DATA."""

    def __init__(self):
        super().__init__(helpers=FUZZ_HELPERS)

    def resolve_lddw_map(self, *args) -> tuple[int, None]:     # (program,) pc, src, imm, next_imm
        src, imm, imm2 = args[-3:]
        return (src * 0x100000001B3 ^ (imm & 0xFFFFFFFF) ^ ((imm2 & 0xFFFFFFFF) << 29)) & M64, None


STUB_RUNTIME = StubRuntime()


# ------------------------------------------------------------------------------- the ISA table view
def category(f: isa.Form) -> str:
    """Which emitter generates a form. Raises for a form no emitter knows (keeps the table in charge)."""
    if f.op in ("le", "be", "bswap"):
        return "swap"
    if f.cls in (isa.CLS_ALU, isa.CLS_ALU64):
        return "alu"
    if f.op in isa.COND_JUMPS:
        return "cond"
    simple = {"ja": "skip", "ja32": "skip", "exit": "exit", "call_local": "call", "call": "helper",
              "call_btf": "helper", "callx": "helper", "ldx": "mem", "ldxs": "mem", "st": "mem", "stx": "mem",
              "ldabs": "packet", "ldind": "packet", "lddw": "lddw"}
    if f.op in simple:
        return simple[f.op]
    if f.op.startswith("lock_"):
        return "mem"
    if f.op.startswith("lddw_"):
        return "pseudo"
    raise ValueError(f"tests/progen.py has no emitter for form {f.mnemonic} ({f.op})")


def family(f: isa.Form) -> str:
    """Forms of one family are equally likely; families of a category too (so that the ten atomic
    operations do not crowd out plain loads and stores)."""
    return "lock" if f.op.startswith("lock_") else f.op


CATEGORY_FORMS: dict[str, tuple[isa.Form, ...]] = {}
FAMILIES: dict[str, dict[str, tuple[isa.Form, ...]]] = {}
for _f in isa.FORMS:
    CATEGORY_FORMS[category(_f)] = CATEGORY_FORMS.get(category(_f), ()) + (_f,)
    _fam = FAMILIES.setdefault(category(_f), {})
    _fam[family(_f)] = _fam.get(family(_f), ()) + (_f,)
del _f, _fam

OPT_LEVELS = {2: 14, 0: 2, 1: 2, 3: 2}     # JIT opt_level -> weight (the campaign favours cheaper levels)
# statement weights (structure-building categories are rarer); alu first so hypothesis shrinks to it
WEIGHTS = {"alu": 30, "swap": 4, "mem": 22, "lddw": 3, "pseudo": 1, "packet": 4, "cond": 9, "skip": 2,
           "loop": 6, "call": 5, "helper": 4, "exit": 1}


def _form(mnemonic: str, srcreg: bool = False) -> isa.Form:
    return next(f for f in isa.BY_MNEMONIC[mnemonic] if f.srcreg == srcreg)


MOV_K, MOV_X, ADD_K, ADD_X, SUB_K, AND_K = (_form("mov"), _form("mov", True), _form("add"), _form("add", True),
                                           _form("sub"), _form("and"))
LDDW, EXIT, JA, STXDW, CALL_LOCAL = (_form("lddw"), _form("exit"), _form("ja"), _form("stxdw"),
                                     _form("call local"))


def make(f: isa.Form, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    """The slot encoding form f (its selector field filled from the table)."""
    v = {"dst": dst, "src": src, "off": off, "imm": imm}
    if f.sel_field:
        v[f.sel_field] = f.sel_value
    return Insn(f.opcode, v["dst"], v["src"], to_s16(v["off"]), to_s32(v["imm"]))


def jump(f: isa.Form, rel: int, dst: int = 0, src: int = 0, imm: int = 0) -> Insn:
    """A jump of form f landing rel slots after the next one."""
    if f.op == "ja32":
        return make(f, imm=rel)
    return make(f, dst, src, off=rel, imm=imm)


INTERESTING = (0, 1, 2, 3, 7, 8, 31, 32, 63, 64, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, M64, M64 - 1,
               0xFFFFFFFF80000000, 0xFFFFFFFFFFFF8000, 0x0123456789ABCDEF, MIX_FAULT)


# ------------------------------------------------------------------------------------ cases, state
class CallRef(NamedTuple):
    """Placeholder slot: `call local` to subprogram `sub`, resolved when the program is linked."""
    sub: int


@dataclass
class Case:
    """A generated program with everything needed to run it."""
    insns: list
    config: Config
    mem_len: int
    mems: list = field(default_factory=list)   # mem contents to run with (each of length mem_len)
    bound: int = 0                             # static bound on executed instructions (entry frame)
    readonly: bool = False                     # `run` with a read-only mem

    def program(self) -> Program:
        return Program.from_insns(self.insns, self.config)

    def with_limit(self, insn_limit: int | None) -> "Case":
        return replace(self, config=self.config.with_(insn_limit=insn_limit))


class State:
    """Kinds of r0..r10 at a program point; dead after an exit."""
    __slots__ = ("regs", "dead")

    def __init__(self, regs, dead=False):
        self.regs, self.dead = list(regs), dead

    def copy(self) -> "State":
        return State(self.regs, self.dead)

    def join(self, other: "State") -> None:
        if other.dead:
            return
        if self.dead:
            self.regs, self.dead = list(other.regs), False
            return
        self.regs = [a if a == b else UNK for a, b in zip(self.regs, other.regs)]


class Ctx(NamedTuple):
    sub: int                 # -1 in main, else the subprogram index
    reserved: frozenset      # registers that must not be written (r9, loop counters)
    cond: int = 0            # conditional nesting
    loops: int = 0           # loop nesting
    dead: bool = False       # generating unreachable code

    def but(self, **kw) -> "Ctx":
        return self._replace(**kw)


class Out:
    """Slots emitted by one statement plus their static cost (executed instructions, upper bound)."""
    __slots__ = ("code", "cost")

    def __init__(self):
        self.code, self.cost = [], 0

    def add(self, *slots, cost: int | None = None):
        self.code += slots
        self.cost += len(slots) if cost is None else cost

    def extend(self, other: "Out", times: int = 1):
        self.code += other.code
        self.cost += other.cost * times


@dataclass
class Sub:
    index: int
    sig: list                      # entry kinds of r0..r5 (callee's frame view)
    chain: bool                    # starts by calling the next subprogram
    code: list = field(default_factory=list)
    cost: int = 0
    exits: list = field(default_factory=list)   # kinds of r0..r5 at each exit


# -------------------------------------------------------------------------------------- generator
class Generator:
    """Builds one `Case` from a source of random choices.

    size: rough number of statements in main; budget: bound on executed instructions per run;
    weights: statement categories to use (default WEIGHTS); opt_levels: JIT opt_level weights (default
    OPT_LEVELS); n_mems: mem contents per case. `case(alu_only=True)`: the "pure ALU" shape (random
    registers, ALU and byte-swap statements, every register stored into mem at the end).
    """

    def __init__(self, src, size: int = 30, budget: int = 4000, weights: dict | None = None,
                 n_mems: int = 1, opt_levels: dict | None = None):
        self.s = src
        self.size = size
        self.budget = budget
        self.opt_levels = list((opt_levels or OPT_LEVELS).items())
        self.weights = dict(WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(CATEGORY_FORMS) - {"loop"}
        if unknown:
            raise ValueError(f"unknown statement categories {sorted(unknown)}")
        self.n_mems = n_mems

    # ---- random values ----
    def value64(self) -> int:
        s = self.s
        k = s.int(0, 9)
        if k < 5:
            v = s.pick(INTERESTING)
            return (v + s.pick((0, 0, 0, 1, -1))) & M64
        if k < 7:
            return s.int(-16, 16) & M64
        return s.int(0, M64)

    def imm32(self) -> int:
        s = self.s
        k = s.int(0, 9)
        if k < 5:
            return to_s32(s.pick(INTERESTING))
        if k < 8:
            return s.int(-70, 70)
        return s.int(-(1 << 31), (1 << 31) - 1)

    # ---- registers ----
    def writable(self, ctx: Ctx, avoid=()) -> list[int]:
        return [r for r in range(10) if r not in ctx.reserved and r not in avoid]

    def set_data(self, st: State, out: Out, r: int, value: int | None = None) -> None:
        """r = a constant (mov or lddw)."""
        v = self.value64() if value is None else value & M64
        if v <= 0x7FFFFFFF or v >= 0xFFFFFFFF80000000:
            out.add(make(MOV_K, r, imm=v))
        else:
            out.add(make(LDDW, r, imm=v), Insn(0, 0, 0, 0, to_s32(v >> 32)), cost=1)
        st.regs[r] = DATA

    def data_reg(self, st: State, ctx: Ctx, out: Out, writable: bool = False, avoid=()) -> int:
        """A register holding DATA (made one with a constant if there is none or by chance)."""
        ok = self.writable(ctx, avoid) if writable else [r for r in range(11) if r not in avoid]
        have = [r for r in ok if st.regs[r] == DATA]
        if have and not self.s.chance(0.1):
            return self.s.pick(have)
        r = self.s.pick(self.writable(ctx, avoid))
        self.set_data(st, out, r)
        return r

    def make_kind(self, st: State, out: Out, r: int, kind) -> None:
        """Emit code giving register r the kind `kind` (DATA or an exact pointer)."""
        if kind == DATA:
            self.set_data(st, out, r)
            return
        region, off = kind[0], kind[1]
        out.add(make(MOV_X, r, 9 if region == MEM else 10))
        if off:
            out.add(make(ADD_K, r, imm=off))
        st.regs[r] = (region, off, off)

    def restore(self, st: State, want: State, out: Out, ctx: Ctx) -> None:
        """Make st at least as precise as `want` (loop back edges)."""
        for r in self.writable(ctx):
            if want.regs[r] not in (UNK, st.regs[r]):
                self.make_kind(st, out, r, want.regs[r] if want.regs[r] == DATA else
                               (want.regs[r][0], want.regs[r][1]))

    def r0_data(self, st: State, out: Out) -> None:
        if st.regs[0] != DATA:
            data = [r for r in range(1, 9) if st.regs[r] == DATA]
            if data and self.s.chance(0.5):
                out.add(make(MOV_X, 0, self.s.pick(data)))
                st.regs[0] = DATA
            else:
                self.set_data(st, out, 0)

    # ---- memory zones (offsets from mem start, or from the current frame's r10) ----
    def zone(self, region: str, ctx: Ctx) -> tuple[int, int, bool]:
        """(lo, hi, may_stick_out): in-bounds offsets [lo, hi) of a region as seen from the current code."""
        if region == MEM:
            return 0, self.mem_len, True
        frame = self.cfg.stack_size
        if ctx.sub < 0:
            return -frame * self.cfg.max_call_depth, 0, True
        return -frame, frame, False      # own frame and the caller's; the depth is not known statically

    def pick_target(self, lo: int, hi: int, size: int, oob_ok: bool, align: bool) -> int | None:
        """An access offset in [lo, hi), or sticking out of it by at most OOB bytes."""
        s = self.s
        fits = hi - lo >= size
        if oob_ok and (not fits or s.chance(0.06)):
            t = s.int(lo - OOB, lo - 1) if s.chance(0.5) else s.int(hi - size + 1, hi + OOB - size)
            if align:
                t -= t % size
                t = t if t >= lo - OOB else t + size
            return t
        if not fits:
            return None
        t = s.int(lo, hi - size)
        if align or s.chance(0.6):
            t -= (t - lo) % size
        return t

    def base(self, region: str, size: int, atomic: bool, st: State, ctx: Ctx, out: Out,
             avoid=()) -> tuple[int, int] | None:
        """(base register, insn offset) addressing `size` bytes in region (emitting base setup code)."""
        s = self.s
        lo, hi, oob_ok = self.zone(region, ctx)
        # pointers already in registers (exact or ranges), plus r9 / r10 themselves
        ptrs = [r for r in range(11) if isinstance(st.regs[r], tuple) and st.regs[r][0] == region
                and r not in avoid]
        way = s.int(0, 9)
        if way < 4 and ptrs:
            r = s.pick(ptrs)
            _, plo, phi = st.regs[r]
            if plo == phi:
                t = self.pick_target(lo, hi, size, oob_ok, atomic)
                if t is not None and -(1 << 15) <= t - plo < (1 << 15):
                    return r, t - plo
            else:
                got = self._range_off(lo, hi, plo, phi, size, atomic)
                if got is not None:
                    return r, got
        if way < 6:
            exact = [r for r in ptrs if st.regs[r][1] == st.regs[r][2]]
            if not exact:
                return None
            src = s.pick(exact)
            writable = self.writable(ctx, avoid)
            rb = s.pick(writable)
            out.add(make(MOV_X, rb, src))
            delta = s.int(-64, 64)
            if delta:
                out.add(make(ADD_K, rb, imm=delta) if s.chance(0.5) else make(SUB_K, rb, imm=-delta))
            p = st.regs[src][1] + delta
            st.regs[rb] = (region, p, p)
            t = self.pick_target(lo, hi, size, oob_ok, atomic)
            return (rb, t - p) if t is not None else None
        if way < 8:   # a bounded index: base + (rI & mask)
            writable = self.writable(ctx, avoid)
            ri = self.data_reg(st, ctx, out, writable=True, avoid=avoid)   # may overwrite a pointer
            exact = [r for r in ptrs if r != ri and st.regs[r][1] == st.regs[r][2]]
            if not exact:
                return None
            mask = s.pick((7, 15, 31, 63, 0x38, 0x78, 0xF0))
            if atomic:
                mask &= ~(size - 1)
            out.add(make(AND_K, ri, imm=mask))
            rb = s.pick([r for r in writable if r != ri])
            src = s.pick(exact)
            p = st.regs[src][1]
            out.add(make(MOV_X, rb, src), make(ADD_X, rb, ri))
            st.regs[rb] = (region, p, p + mask)
            got = self._range_off(lo, hi, p, p + mask, size, atomic, oob_ok)
            return (rb, got) if got is not None else None
        r = 9 if region == MEM else 10
        t = self.pick_target(lo, hi, size, oob_ok, atomic)
        return (r, t) if t is not None else None

    def _range_off(self, lo, hi, plo, phi, size, atomic, oob_ok=False) -> int | None:
        """An insn offset making every address of a pointer range [plo, phi] access in bounds (or sticking
        out by at most OOB bytes when allowed)."""
        slack = OOB if oob_ok and self.s.chance(0.1) else 0
        a, b = lo - slack - plo, hi + slack - size - phi
        if a > b:
            return None
        off = self.s.int(a, b)
        if atomic:
            off -= (plo + off) % size
            if off < a:
                off += size
            if off > b:
                return None
        return off

    # ---- statements ----
    def statement(self, st: State, ctx: Ctx, budget: int) -> Out:
        s = self.s
        avail = {k: w for k, w in self.weights.items() if self._allowed(k, ctx, budget)}
        cat = weighted(s, list(avail.items()))
        out = Out()
        if cat == "loop":
            self.e_loop(st, ctx, budget, out)
            return out
        fams = FAMILIES[cat]
        f = s.pick(fams[s.pick(tuple(fams))])
        getattr(self, "e_" + cat)(f, st, ctx, budget, out)
        return out

    def _allowed(self, cat: str, ctx: Ctx, budget: int) -> bool:
        if cat == "cond":
            return ctx.cond < 3
        if cat == "loop":
            return ctx.loops < 2 and budget > 20 and not ctx.dead and self._counters(ctx)
        if cat == "call":
            return ctx.sub + 1 < len(self.subs)
        if cat == "exit":
            return ctx.cond > 0
        return True

    def block(self, st: State, ctx: Ctx, n: int, budget: int) -> Out:
        out = Out()
        for _ in range(n):
            if st.dead:
                break
            out.extend(self.statement(st, ctx, budget - out.cost))
        return out

    def e_alu(self, f, st, ctx, budget, out):
        s = self.s
        ptrs = [r for r in self.writable(ctx) if isinstance(st.regs[r], tuple) and st.regs[r][1] == st.regs[r][2]]
        if f.op in ("add", "sub") and f.is64 and not f.srcreg and ptrs and s.chance(0.3):   # pointer arithmetic
            r = s.pick(ptrs)
            d = s.int(-40, 40)
            out.add(make(f, r, imm=d))
            region, p, _ = st.regs[r]
            p += d if f.op == "add" else -d
            st.regs[r] = (region, p, p)
            return
        src = None
        if f.srcreg:
            src = self.data_reg(st, ctx, out)
            if f.op in ("div", "mod", "sdiv", "smod") and s.chance(0.3):
                src = s.pick(self.writable(ctx))
                self.set_data(st, out, src, s.pick((0, 0, M64, 1, 1 << 32)))
        dst = s.pick(self.writable(ctx)) if f.op.startswith("mov") else \
            self.data_reg(st, ctx, out, writable=True)
        out.add(make(f, dst, src or 0, imm=self.imm32() if f.imm == "any" else 0))
        st.regs[dst] = DATA

    def e_swap(self, f, st, ctx, budget, out):
        out.add(make(f, self.data_reg(st, ctx, out, writable=True)))

    def e_lddw(self, f, st, ctx, budget, out):
        r = self.s.pick(self.writable(ctx))
        v = self.value64()
        out.add(make(f, r, imm=v), Insn(0, 0, 0, 0, to_s32(v >> 32)), cost=1)
        st.regs[r] = DATA

    def e_pseudo(self, f, st, ctx, budget, out):
        r = self.s.pick(self.writable(ctx))
        out.add(make(f, r, imm=self.s.int(-3, 40)), Insn(0, 0, 0, 0, self.s.pick((0, 0, 8, -1))), cost=1)
        st.regs[r] = DATA

    def e_packet(self, f, st, ctx, budget, out):
        s = self.s
        size = f.width // 8
        near = lambda: s.int(-size - 1, self.mem_len + 2)   # noqa: E731
        if f.op == "ldabs":
            out.add(make(f, imm=near() if s.chance(0.85) else self.imm32()))
        else:
            if s.chance(0.7):
                r = s.pick(self.writable(ctx))
                self.set_data(st, out, r, s.int(-4, self.mem_len + 4) if s.chance(0.9) else self.value64())
            else:
                r = self.data_reg(st, ctx, out)
            out.add(make(f, src=r, imm=s.int(-4, 8) if s.chance(0.9) else self.imm32()))
        st.regs[0] = DATA

    def e_mem(self, f, st, ctx, budget, out):
        s = self.s
        size = f.width // 8
        atomic = f.op.startswith("lock_")
        cmpxchg = f.op == "lock_cmpxchg"
        if cmpxchg:
            self.r0_data(st, out)
        region = MEM if s.chance(0.55) else STK
        got = self.base(region, size, atomic, st, ctx, out, avoid=(0,) if cmpxchg else ())
        if got is None:
            return
        b, off = got
        if f.op in ("ldx", "ldxs"):
            d = s.pick(self.writable(ctx))
            out.add(make(f, d, b, off))
            st.regs[d] = DATA
        elif f.op == "st":
            out.add(make(f, b, off=off, imm=self.imm32()))
        else:
            fetch = f.op.startswith("lock_fetch") or f.op == "lock_xchg"
            r = self.data_reg(st, ctx, out, writable=fetch, avoid=(b,))
            out.add(make(f, b, r, off))
            if cmpxchg:
                st.regs[0] = DATA

    def e_cond(self, f, st, ctx, budget, out):
        s = self.s
        a = self.data_reg(st, ctx, out)
        b = self.data_reg(st, ctx, out) if f.srcreg else 0
        imm = 0 if f.srcreg else self.imm32()
        inner = ctx.but(cond=ctx.cond + 1)
        then_st = st.copy()
        then = self.block(then_st, inner, s.int(1, 5), budget - 1)
        if s.chance(0.3):
            else_st = st.copy()
            other = self.block(else_st, inner, s.int(1, 4), budget - 1)
            # then-block, ja over the else-block (none after an exit: it could land past the end)
            tail = [] if then_st.dead else [jump(s.pick(CATEGORY_FORMS["skip"]), len(other.code))]
            out.add(jump(f, len(then.code) + len(tail), a, b, imm))
            out.extend(then)
            out.add(*tail)
            out.extend(other)
            then_st.join(else_st)
            st.regs, st.dead = then_st.regs, then_st.dead
        else:
            out.add(jump(f, len(then.code), a, b, imm))
            out.extend(then)
            st.join(then_st)

    def e_skip(self, f, st, ctx, budget, out):
        dead = self.block(st.copy(), ctx.but(dead=True, cond=ctx.cond + 1), self.s.int(0, 3), 10**9)
        out.add(jump(f, len(dead.code)))
        out.add(*dead.code, cost=0)

    def e_exit(self, f, st, ctx, budget, out):
        self.r0_data(st, out)
        out.add(make(f))
        if ctx.sub >= 0 and not ctx.dead:
            self.subs[ctx.sub].exits.append(st.regs[:6])
        st.dead = True

    def e_call(self, f, st, ctx, budget, out, target: int | None = None):
        s = self.s
        j = s.int(ctx.sub + 1, len(self.subs) - 1) if target is None else target
        sub = self.subs[j]
        if sub.cost + 8 > budget and not ctx.dead:
            return
        frame = self.cfg.stack_size
        for r, kind in enumerate(sub.sig):
            if kind == UNK or r in ctx.reserved:
                continue
            if kind == DATA:
                if st.regs[r] != DATA or s.chance(0.3):
                    self.set_data(st, out, r)
            else:
                self.make_kind(st, out, r, (kind[0], kind[1] - (frame if kind[0] == STK else 0)))
        out.add(CallRef(j), cost=1 + sub.cost)
        ret = sub.exits[0] if sub.exits else [UNK] * 6
        for e in sub.exits[1:]:
            ret = [a if a == b else UNK for a, b in zip(ret, e)]
        st.regs[:6] = [(k[0], k[1] - frame, k[2] - frame) if isinstance(k, tuple) and k[0] == STK else k
                       for k in ret]

    def e_helper(self, f, st, ctx, budget, out):
        s = self.s
        hid = s.pick(HELPER_IDS) if f.op != "call_btf" else MIX_ID
        known = f.op != "callx" or s.chance(0.8)    # else callx to an unknown helper id: bad_call
        if hid == MIX_ID:
            for r in (1, 2):
                if st.regs[r] != DATA or s.chance(0.3):
                    self.set_data(st, out, r, MIX_FAULT if r == 1 and s.chance(0.05) else None)
        if f.op == "callx":
            r = s.pick(self.writable(ctx))
            self.set_data(st, out, r, hid if known else s.pick((0, 1, 6, 999, 1 << 31, (1 << 32) + 5, M64)))
            hid = hid if known else None
            out.add(make(f, r))
        else:
            out.add(make(f, imm=MIX_BTF if f.op == "call_btf" else hid))
        if hid == MIX_ID and st.regs[1] == DATA and st.regs[2] == DATA:
            st.regs[0] = DATA
        else:   # a timestamp (helper 5) or a mix of pointers: overwrite it at once
            st.regs[0] = UNK
            self.r0_data(st, out)

    def _counters(self, ctx: Ctx) -> list[int]:
        return [r for r in (6, 7, 8) if r not in ctx.reserved]

    def e_loop(self, st, ctx, budget, out):
        """A counter loop: `c = N; top: body; c -= 1; if c != 0 goto top` (or counting up, or a ja back)."""
        s = self.s
        c = s.pick(self._counters(ctx))
        inner = ctx.but(reserved=ctx.reserved | {c}, loops=ctx.loops + 1)
        entry = st.copy()
        entry.regs[c] = DATA
        body_st = entry.copy()
        body = self.block(body_st, inner, s.int(1, 6), budget // 3)
        self.restore(body_st, entry, body, inner)
        per = body.cost + 3
        n = min(s.int(1, MAX_LOOP) if s.chance(0.7) else s.int(1, 8), max(1, (budget - 2) // per))
        shape = s.int(0, 2)
        conds = {f.op + ("" if f.is64 else "32"): f for f in CATEGORY_FORMS["cond"] if not f.srcreg}
        if shape == 0:     # count down to zero
            op, k = s.pick((("jne", 0), ("jgt", 0), ("jsgt", 0), ("jge", 1), ("jsge", 1), ("jne32", 0),
                            ("jgt32", 0), ("jsge32", 1)))
            out.add(make(MOV_K, c, imm=n))
            dec = make(s.pick((ADD_K, SUB_K, _form("add32"), _form("sub32"))), c)
            dec = dec._replace(imm=-1 if dec.opcode in (ADD_K.opcode, _form("add32").opcode) else 1)
            out.extend(body)
            out.add(dec, jump(conds[op], -(len(body.code) + 2), c, imm=k), cost=0)
            out.cost += 2 * n + body.cost * (n - 1)
        elif shape == 1:   # count up to n
            op, k = s.pick((("jlt", n), ("jle", n - 1), ("jslt", n), ("jsle", n - 1), ("jne", n), ("jlt32", n)))
            out.add(make(MOV_K, c, imm=0))
            out.extend(body)
            out.add(make(ADD_K, c, imm=1), jump(conds[op], -(len(body.code) + 2), c, imm=k), cost=0)
            out.cost += 2 * n + body.cost * (n - 1)
        else:              # top: if c == 0 goto out; body; c -= 1; goto top
            ja = s.pick(CATEGORY_FORMS["skip"])
            out.add(make(MOV_K, c, imm=n), jump(conds["jeq"], len(body.code) + 2, c, imm=0))
            out.extend(body)
            out.add(make(SUB_K, c, imm=1), jump(ja, -(len(body.code) + 3)), cost=0)
            out.cost += 3 * n + 1 + body.cost * (n - 1)
        entry.join(body_st)   # the loop is left from its head (entry kinds) or after the body
        st.regs = entry.regs

    # ---- whole programs ----
    def config(self) -> Config:
        s = self.s
        lim = None if s.chance(0.1) else 10_000_000     # None: the JIT runs without its meter
        return Config(insn_limit=lim, max_call_depth=8 if s.chance(0.8) else s.int(1, 7),
                      stack_size=512 if s.chance(0.85) else s.pick((256, 1024)),
                      opt_level=weighted(s, self.opt_levels))

    def sub_sig(self) -> list:
        s = self.s
        frame = self.cfg.stack_size
        kinds = [UNK, DATA, DATA, (MEM, 0, 0), (MEM, 8, 8), (STK, frame - 64, frame - 64), (STK, frame - 8,
                                                                                        frame - 8)]
        return [s.pick((UNK, DATA))] + [s.pick(kinds) for _ in range(5)]

    def case(self, alu_only: bool = False) -> Case:
        s = self.s
        self.cfg = self.config()
        self.mem_len = s.pick((0, 1, 4, 7, 8)) if s.chance(0.08) else s.pick((16, 24, 32, 40, 64, 100, 128, 256))
        if alu_only:
            self.mem_len = 8 * 9
            self.weights = {"alu": 10, "swap": 2}
        self.deep = not alu_only and s.chance(0.08)   # a call chain long enough to hit max_call_depth
        n_subs = 0 if alu_only else s.pick((0, 0, 1, 2, 3, 4))
        if self.deep:
            n_subs = self.cfg.max_call_depth + s.int(0, 1)
        self.subs = [Sub(i, self.sub_sig(), self.deep or s.chance(0.4)) for i in range(n_subs)]
        for sub in reversed(self.subs):
            self.emit_sub(sub)
        main = self.emit_main(alu_only)
        insns = self.link(main.code)
        if self.cfg.insn_limit is not None and not alu_only and s.chance(0.2):   # a limit inside the run
            self.cfg = self.cfg.with_(insn_limit=s.int(1, max(1, min(main.cost, 5000))))
        mems = [self.mem_bytes() for _ in range(self.n_mems)]
        return Case(insns, self.cfg, self.mem_len, mems, main.cost, readonly=not alu_only and s.chance(0.08))

    def mem_bytes(self) -> bytes:
        s = self.s
        k = s.int(0, 3)
        if k == 0:
            return bytes(self.mem_len)
        if k == 1:
            return bytes([s.pick((0, 1, 0x7F, 0x80, 0xFF))]) * self.mem_len
        return s.bytes(self.mem_len)

    def emit_main(self, alu_only: bool) -> Out:
        s = self.s
        ctx = Ctx(-1, frozenset({9}))
        st = State([DATA, (MEM, 0, 0), DATA] + [DATA] * 6 + [UNK, (STK, 0, 0)])
        out = Out()
        out.add(make(MOV_X, 9, 1))
        st.regs[9] = (MEM, 0, 0)
        if alu_only:
            for r in range(9):
                self.set_data(st, out, r)
            body = self.block(st, ctx, self.size, self.budget)
            out.extend(body)
            for r in range(9):
                out.add(make(STXDW, 9, r, off=8 * r))
        else:
            if self.deep:
                self.e_call(CALL_LOCAL, st, ctx, self.budget, out, target=0)
            out.extend(self.block(st, ctx, s.int(max(1, self.size // 2), self.size), self.budget - out.cost))
            if not st.dead:   # every DATA register ends up in the compared stack
                for r in range(9):
                    if st.regs[r] == DATA:
                        out.add(make(STXDW, 10, r, off=-8 * (r + 1)))
        if not st.dead:
            self.r0_data(st, out)
            out.add(make(EXIT))
        return out

    def emit_sub(self, sub: Sub) -> None:
        s = self.s
        ctx = Ctx(sub.index, frozenset({9}))
        st = State(sub.sig + [UNK] * 3 + [(MEM, 0, 0), (STK, 0, 0)])
        out = Out()
        budget = max(30, self.budget // (2 + sub.index))
        if sub.chain and sub.index + 1 < len(self.subs):
            self.e_call(CALL_LOCAL, st, ctx, budget, out, target=sub.index + 1)
        out.extend(self.block(st, ctx, s.int(1, max(2, self.size // 4)), budget - out.cost))
        if not st.dead:
            self.e_exit(EXIT, st, ctx, budget, out)
        sub.code, sub.cost = out.code, out.cost

    def link(self, main: list) -> list[Insn]:
        starts, pos = [], len(main)
        for sub in self.subs:
            starts.append(pos)
            pos += len(sub.code)
        code = main + [x for sub in self.subs for x in sub.code]
        return [make(CALL_LOCAL, imm=starts[x.sub] - pc - 1) if isinstance(x, CallRef) else x
                for pc, x in enumerate(code)]


def random_case(rnd: random.Random, **kw) -> Case:
    """A case from a `random.Random` (the campaign script's entry point)."""
    alu_only = kw.pop("alu_only", False)
    return Generator(RandomSource(rnd), **kw).case(alu_only)


def cases(**kw):
    """Hypothesis strategy of `Case`s (keyword arguments as for `Generator`, plus alu_only)."""
    from hypothesis import strategies as st
    alu_only = kw.pop("alu_only", False)

    @st.composite
    def _cases(draw):
        return Generator(DrawSource(draw), **kw).case(alu_only)
    return _cases()


# ---------------------------------------------------------------------------------- the harness
class Mode(NamedTuple):
    """How a case is run: `VM.run` on mem `mem` (read-only or not), `VM.run_batch` over all mems as
    records, or `VM.bench` (n runs) on mem `mem`. Each is a separate native entry point of the JIT."""
    how: str = "run"
    mem: int = 0
    readonly: bool = False
    n: int = 3

    def __str__(self) -> str:
        return {"run": f"run(mem {self.mem}{', readonly' if self.readonly else ''})", "batch": "run_batch",
                "bench": f"bench(mem {self.mem}, n={self.n})"}[self.how]


def modes(case: Case) -> list[Mode]:
    """Every mem with `run`, then a batch over all mems (records need a size), then a bench."""
    out = [Mode("run", i, case.readonly) for i in range(len(case.mems))]
    if case.mem_len:
        out.append(Mode("batch"))
    return out + [Mode("bench")]


@dataclass
class Outcome:
    """What one run produced: r0 (a tuple for a batch) and the meter on success, else the fault; the final
    mem (all records for a batch) and stack bytes."""
    kind: str                     # "ok" or a fault kind
    r0: int | tuple | None = None
    count: int | None = None
    pc: int | None = None
    addr: int | None = None
    size: int | None = None
    record: int | None = None     # batch: the faulting record
    mem_start: int = 0
    stack_start: int = 0
    mem: bytes = b""
    stack: bytes = b""
    maps: tuple = ()              # seams: final map contents
    bases: dict = field(default_factory=dict)   # seams: map name -> region start

    def describe(self) -> str:
        if self.kind == "ok":
            many = isinstance(self.r0, tuple)
            r0 = "[" + ", ".join(f"{v:#x}" for v in self.r0) + "]" if many else f"{self.r0:#x}"
            return f"r0={r0}" + ("" if self.count is None else f" count={self.count}")
        where = "" if self.addr is None else f" addr={self.addr:#x} (mem{self.addr - self.mem_start:+d}) " \
                                              f"size={self.size}"
        return f"fault {self.kind} pc={self.pc}{where}" + ("" if self.record is None else f" record={self.record}")


def make_vm(case: Case, engine: str, prog: Program | None = None) -> VM:
    return VM(prog or case.program(), engine, case.config, helpers=FUZZ_HELPERS, runtime=STUB_RUNTIME)


def run_engine(vm: VM, case: Case, mode: Mode = Mode()) -> Outcome:
    """Run once in `mode` on a private copy of the case's mem, with a zeroed thread stack."""
    stack = thread_stack(vm.config.stack_size * vm.config.max_call_depth)
    stack.buf[:] = 0
    if mode.how == "batch":
        buf = np.frombuffer(b"".join(case.mems), dtype=np.uint8).reshape(len(case.mems), case.mem_len).copy()
    else:
        buf = np.frombuffer(case.mems[mode.mem], dtype=np.uint8).copy()
    start = buf.ctypes.data if buf.size else 0
    try:   # engine.last_count is the meter of the last run: of the last record / the last bench run
        if mode.how == "run":
            r0 = vm.run(buf, readonly=mode.readonly)
        elif mode.how == "batch":
            r0 = tuple(int(v) for v in vm.run_batch(buf))
        else:
            r0 = vm.bench(buf, mode.n)
        out = Outcome("ok", r0=r0, count=vm.engine.last_count)
    except RuntimeFault as e:
        out = Outcome(e.kind, pc=e.pc, addr=e.addr, size=e.size, record=getattr(e, "record", None))
    out.mem_start, out.stack_start = start, stack.start
    out.mem = buf.tobytes()
    out.stack = stack.buf.tobytes()
    return out


def compare(a: Outcome, b: Outcome, metered: bool = True) -> list[str]:
    """What differs between two outcomes (empty: identical). Fault addresses match if equal or at the same
    offset from their mem copies or from their stacks (one address for both engines of a thread). The meter
    (`last_count`) is compared only for metered runs (insn_limit set) whose JIT code has a meter: proven-safe
    code (safety "auto" on a program the verifier proves) runs without one and reports None."""
    diffs = []
    if a.kind != b.kind:
        diffs.append("outcome")
    elif a.kind == "ok":
        if a.r0 != b.r0:
            diffs.append("r0")
        if a.count != b.count and metered and None not in (a.count, b.count):   # None: code without a meter
            diffs.append("count")
    else:
        diffs += [f"fault {k}" for k in ("pc", "size", "record") if getattr(a, k) != getattr(b, k)]
        same = a.addr == b.addr or (a.addr is not None and b.addr is not None and (
            a.addr - a.mem_start == b.addr - b.mem_start or a.addr - a.stack_start == b.addr - b.stack_start))
        if not same:
            diffs.append("fault addr")
    if a.mem != b.mem:
        diffs.append("mem")
    if a.stack != b.stack:
        diffs.append("stack")
    return diffs


def run_case(case: Case, vms=None, only: list[Mode] | None = None) -> list[tuple[Mode, Outcome, Outcome, list]]:
    """(mode, interp outcome, jit outcome, differences) for every mode of the case (or `only` these)."""
    vi, vj = vms or (make_vm(case, "interp"), make_vm(case, "jit"))
    res = []
    for mode in only or modes(case):
        a, b = run_engine(vi, case, mode), run_engine(vj, case, mode)
        res.append((mode, a, b, compare(a, b, case.config.insn_limit is not None)))
    return res


def self_check(case: Case, mode: Mode = Mode()) -> list[str]:
    """Differences between two interpreter runs with other mem and stack addresses (the second run is in a
    new thread, which has its own stack). Non-empty means the program depends on addresses or time: a
    generator bug, not an engine divergence."""
    first = run_engine(make_vm(case, "interp"), case, mode)
    box = []
    t = threading.Thread(target=lambda: box.append(run_engine(make_vm(case, "interp"), case, mode)))
    t.start()
    t.join()
    return compare(first, box[0])


def to_data(case: Case, mode: Mode, header: list[str]) -> str:
    """A .data reproducer: comments (header, config, mode), raw words, assembly, mem (all mems, in order)."""
    from bpfjit.asm import disassemble
    cfg = case.config
    conf = {k: getattr(cfg, k) for k in ("insn_limit", "max_call_depth", "stack_size", "opt_level", "checked")}
    lines = [f"# {h}" for h in header]
    lines.append(f"# config: {conf!r}")
    lines.append(f"# mode: {tuple(mode)!r} mem_len: {case.mem_len}  ({mode}; mem holds {len(case.mems)} mems)")
    lines.append("# helpers: tests/progen.py FUZZ_HELPERS; lddw pseudo sources: tests/progen.py StubRuntime")
    lines.append("-- raw")
    lines += [f"0x{int.from_bytes(isa.encode([i]), 'little'):016x}" for i in case.insns]
    lines.append("-- asm")
    lines += disassemble(case.insns).splitlines()
    lines.append("-- mem")
    mem = b"".join(case.mems)
    lines += [" ".join(f"{b:02x}" for b in mem[i:i + 16]) for i in range(0, len(mem), 16)]
    return "\n".join(lines) + "\n"


def from_data(text: str, path: str = "<data>") -> tuple[Case, Mode]:
    """The case and mode of a reproducer written by `to_data`."""
    import ast

    from bpfjit import datafile
    df = datafile.parse(text, path)
    meta = {ln.split(":", 1)[0][2:]: ln for ln in text.splitlines() if ln.startswith(("# config:", "# mode:"))}
    conf = ast.literal_eval(meta["config"].split(":", 1)[1])
    mode_text = meta["mode"].split(":", 1)[1]
    mode = Mode(*ast.literal_eval(mode_text.split(" mem_len:")[0]))
    mem_len = int(mode_text.split(" mem_len:")[1].split()[0])
    mems = [df.mem[i:i + mem_len] for i in range(0, len(df.mem), mem_len)] if mem_len else [b""]
    return Case(datafile.insns_of(df), Config(**conf), mem_len, mems, readonly=mode.readonly), mode


# ------------------------------------------------------------------------------------------ seams
# Programs that cross the seams between parts: maps (array and hash lookup/update/delete through the map
# helpers, loads, stores and atomics on looked-up values), tail calls (a prog_array of generated targets),
# kprobe contexts (prog_type kprobe, a read-only pt_regs ctx) and Python helpers. Built from statement
# templates as assembly text. Register discipline: r6 = the ctx pointer (set at every entry, main and target),
# r7 and r9 DATA, r8 scratch DATA; r0 after a lookup is a pointer and is overwritten before it can reach
# data. Every run gets fresh map contents (`SeamCase.reset`), so both engines start alike.
ARR_ENTRIES, ARR_VALUE = 4, 16
HASH_ENTRIES = 6
SEAM_SLOTS = 4                         # prog_array slots; the last one stays empty
KPROBE_KV = 0x040100


def seam_registry():
    from bpfjit.helpers import default_registry
    from bpfjit.helpers.map_helpers import register_map_helpers
    reg = register_map_helpers(default_registry().copy())
    reg.register(Helper(MIX_ID, "fuzz_mix", fuzz_mix, ("anything", "anything"), "integer"))
    reg.register(Helper(CTX_BYTE_ID, "ctx_byte", ctx_byte, ("anything", "anything"), "integer"))
    return reg


CTX_BYTE_ID = 1001
FOREIGN_ID = 1002       # foreign_map(r1): a live map the program was not loaded with (issue 8, used_maps)


def ctx_byte(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """A Python helper that reads the run's memory: the byte at r1 + (r2 & 7), or -14 if unreadable."""
    data = ctx.aspace.read_bytes((r1 + (r2 & 7)) & M64, 1)
    return data[0] if data is not None else (-14) & M64


@dataclass
class SeamCase:
    """A main program and its tail-call targets (assembly text), the program type, Config, mems (records)
    and the initial map contents."""
    main: str
    targets: list                      # [text or None] per prog_array slot
    prog_type: str
    config: Config
    mems: list
    arr_init: list
    hash_init: dict
    readonly: bool = False

    @property
    def mem_len(self) -> int:
        return len(self.mems[0])

    def text(self) -> str:
        out = [f"# prog_type {self.prog_type} config {self.config}", f"# arr {self.arr_init}",
               f"# hash {self.hash_init}", "-- main", self.main]
        for i, t in enumerate(self.targets):
            out += [f"-- target {i}", t if t is not None else "(empty)"]
        return "\n".join(out)


def _arr_buf(m) -> np.ndarray:
    return m.regions()[0].buf


class SeamRig:
    """One engine's runtime for a SeamCase: the maps, the prog_array filled with the targets, the VM."""

    def __init__(self, case: SeamCase, engine: str):
        from bpfjit.maps import ArrayMap, HashMap, ProgArrayMap
        self.case = case
        reg = seam_registry()
        self.rt = Runtime(case.config, helpers=reg, kern_version=KPROBE_KV)
        # maps no program of the case references: one of this runtime, one of another runtime; a Python
        # helper hands out their addresses (r1 & 1 picks), so programs can forge map pointers to them
        self.spare = HashMap(4, 8, 2, name="spare", key_type=np.uint32, value_type=np.uint64)
        self.rt.add_map(self.spare)
        self.alien_rt = Runtime(case.config, helpers=seam_registry(), kern_version=KPROBE_KV)
        self.alien = HashMap(4, 8, 2, name="alien", key_type=np.uint32, value_type=np.uint64)
        self.alien_rt.add_map(self.alien)
        foreign = (self.alien.desc_addr, self.spare.desc_addr)
        reg.register(Helper(FOREIGN_ID, "foreign_map", lambda ctx, r1=0, *a: foreign[r1 & 1],
                            ("anything",), "integer"))
        self.arr = ArrayMap(4, ARR_VALUE, ARR_ENTRIES, name="arr")
        self.h = HashMap(4, 8, HASH_ENTRIES, name="h", value_type=np.uint64)
        self.jmp = ProgArrayMap(SEAM_SLOTS, self.rt, name="jmp")
        for m in (self.arr, self.h, self.jmp):
            self.rt.add_map(m)
        meta = dict(prog_type=case.prog_type, kern_version=KPROBE_KV, license="GPL")
        for i, t in enumerate(case.targets):
            if t is not None:
                self.jmp[i] = self.rt.assemble(t, **meta)
        self.vm = VM(self.rt.assemble(case.main, **meta), engine, case.config, runtime=self.rt)

    def reset(self) -> None:
        _arr_buf(self.arr)[:] = np.frombuffer(bytes(self.case.arr_init), dtype=np.uint8)
        for m in (self.spare, self.alien):
            m.clear()
            m[0] = 0x5EC12E7
        self.h.clear()
        for k, v in self.case.hash_init.items():
            self.h[k] = v

    def maps_state(self) -> tuple:
        return (_arr_buf(self.arr).tobytes(), tuple(sorted((int(k), int(v)) for k, v in self.spare.items())),
                tuple(sorted((int(k), int(v)) for k, v in self.alien.items())),
                tuple(sorted((bytes(k) if not isinstance(k, int) else k.to_bytes(4, "little"), int(v))
                             for k, v in self.h.items())))

    def bases(self) -> dict:
        return {"arr": self.arr.regions()[0].start, "h": self.h.regions()[0].start}


def seam_run(rig: SeamRig, mode: Mode) -> Outcome:
    """Run a SeamCase in `mode` with fresh map contents and a zeroed stack; the outcome's `maps` holds the
    final map contents and `bases` the map regions' starts (fault addresses compare relative to them)."""
    case, vm = rig.case, rig.vm
    rig.reset()
    stack = thread_stack(vm.config.stack_size * vm.config.max_call_depth)
    stack.buf[:] = 0
    if mode.how == "batch":
        buf = np.frombuffer(b"".join(case.mems), dtype=np.uint8).reshape(len(case.mems), case.mem_len).copy()
    else:
        buf = np.frombuffer(case.mems[mode.mem], dtype=np.uint8).copy()
    try:
        if mode.how == "run":
            r0 = vm.run(buf, readonly=mode.readonly)
        elif mode.how == "batch":
            r0 = tuple(int(v) for v in vm.run_batch(buf))
        else:
            r0 = vm.bench(buf, mode.n)
        out = Outcome("ok", r0=r0, count=vm.engine.last_count)
    except RuntimeFault as e:
        out = Outcome(e.kind, pc=e.pc, addr=e.addr, size=e.size, record=getattr(e, "record", None))
    out.mem_start, out.stack_start = buf.ctypes.data, stack.start
    out.mem, out.stack = buf.tobytes(), stack.buf.tobytes()
    out.maps = rig.maps_state()
    out.bases = rig.bases()
    return out


def seam_compare(a: Outcome, b: Outcome, metered: bool) -> list[str]:
    diffs = compare(a, b, metered)
    if "fault addr" in diffs and a.addr is not None and b.addr is not None and any(
            a.addr - a.bases[k] == b.addr - b.bases[k] for k in a.bases):
        diffs.remove("fault addr")
    if a.maps != b.maps:
        diffs.append("maps")
    return diffs


def seam_modes(case: SeamCase) -> list[Mode]:
    return [Mode("run", i, case.readonly) for i in range(len(case.mems))] + [Mode("batch"), Mode("bench")]


def run_seam_case(case: SeamCase, only=None) -> list[tuple[Mode, Outcome, Outcome, list]]:
    ri, rj = SeamRig(case, "interp"), SeamRig(case, "jit")
    res = []
    for mode in only or seam_modes(case):
        a, b = seam_run(ri, mode), seam_run(rj, mode)
        res.append((mode, a, b, seam_compare(a, b, case.config.insn_limit is not None)))
    return res


class SeamGenerator:
    """Random SeamCases from a source (RandomSource or DrawSource)."""

    def __init__(self, src, size: int = 8):
        self.s, self.size, self.n = src, size, 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def imm(self) -> int:
        s = self.s
        return s.pick((0, 1, -1, 7, 0x7F, 0x80, -0x80000000, 0x7FFFFFFF)) if s.chance(0.5) else s.int(-1000, 1000)

    def key(self, hi: int) -> int:
        return self.s.int(0, hi)

    def key_on_stack(self, k: int) -> list[str]:
        return [f"stw [%r10-4], {k}", "mov %r2, %r10", "add %r2, -4"]

    def value_op(self, value_size: int, oob: bool) -> list[str]:
        """An access through r0 (a value pointer, non-null): load into r8 (added to r9), store or atomic."""
        s = self.s
        size = s.pick((1, 2, 4, 8))
        sfx = {1: "b", 2: "h", 4: "w", 8: "dw"}[size]
        off = s.int(0, (value_size - size) // size) * size
        if oob and s.chance(0.15):
            off = s.pick((value_size, -size, value_size - size + s.int(1, size - 1) if size > 1 else value_size))
        kind = s.pick(("load", "load", "store", "atomic"))
        if kind == "load":
            return [f"ldx{sfx} %r8, [%r0{off:+d}]", "add %r9, %r8"]
        if kind == "store":
            return [f"stx{sfx} [%r0{off:+d}], %r9"] if s.chance(0.5) else [f"st{sfx} [%r0{off:+d}], {self.imm()}"]
        w = s.pick((4, 8))
        off = (off // w) * w if off >= 0 else -w
        if oob and s.chance(0.1):
            off = value_size
        op = s.pick(("add", "or", "and", "xor", "fetch_add", "xchg", "cmpxchg"))
        width = "32" if w == 4 else ""
        if op == "cmpxchg":    # r0 is the expected value and gets the old one: the pointer waits in r8
            return ["mov %r8, %r0", "mov %r0, %r7", f"lock cmpxchg{width} [%r8{off:+d}], %r9", "add %r9, %r0",
                    "mov %r0, %r8", "mov %r8, 0"]
        if op in ("fetch_add", "xchg"):
            mn = "fetch add" if op == "fetch_add" else op
            return ["mov %r8, %r7", f"lock {mn}{width} [%r0{off:+d}], %r8", "add %r9, %r8"]
        return [f"lock {op}{width} [%r0{off:+d}], %r7"]

    def st_lookup(self, in_target: bool) -> list[str]:
        s = self.s
        hashed = s.chance(0.4)
        name, vsize, hi = ("h", 8, HASH_ENTRIES + 2) if hashed else ("arr", ARR_VALUE, ARR_ENTRIES + 1)
        skip = self.label()
        body = [x for _ in range(s.int(1, 3)) for x in self.value_op(vsize, oob=not hashed)]
        return ([f"lddw %r1, map({name})"] + self.key_on_stack(self.key(hi)) +
                ["call map_lookup_elem", f"jeq %r0, 0, {skip}"] + body + [f"{skip}:", "mov %r0, 0"])

    def st_update(self, in_target: bool) -> list[str]:
        s = self.s
        hashed = s.chance(0.7)
        name, vsize, hi = ("h", 8, HASH_ENTRIES + 3) if hashed else ("arr", ARR_VALUE, ARR_ENTRIES + 1)
        lines = [f"stxdw [%r10-{8 + vsize}], %r9"] + ([f"stxdw [%r10-16], %r7"] if vsize == 16 else [])
        lines += [f"lddw %r1, map({name})"] + self.key_on_stack(self.key(hi))
        lines += ["mov %r3, %r10", f"add %r3, -{8 + vsize}", f"mov %r4, {s.pick((0, 0, 1, 2, 4))}",
                  "call map_update_elem", "add %r9, %r0"]
        return lines

    def st_delete(self, in_target: bool) -> list[str]:
        name = "h" if self.s.chance(0.8) else "arr"
        return [f"lddw %r1, map({name})"] + self.key_on_stack(self.key(HASH_ENTRIES + 2)) + \
            ["call map_delete_elem", "add %r9, %r0"]

    def st_tail(self, in_target: bool) -> list[str]:
        return ["mov %r1, %r6", "lddw %r2, map(jmp)", f"mov %r3, {self.s.int(0, SEAM_SLOTS)}", "call tail_call",
                "add %r9, %r0"]

    def st_py(self, in_target: bool) -> list[str]:
        s = self.s
        first = f"mov %r1, {MIX_FAULT}" if s.chance(0.05) else "mov %r1, %r9"
        return [first, "mov %r2, %r7", "call fuzz_mix", "add %r9, %r0", "mov %r1, %r6"]

    def st_ctxhelper(self, in_target: bool) -> list[str]:
        return ["mov %r1, %r6", "mov %r2, %r7", "call ctx_byte", "add %r9, %r0", "mov %r1, %r6"]

    def st_forged(self, in_target: bool) -> list[str]:
        """A map helper with a forged pointer to a live map of the right type that the program was not
        loaded with: lookup gets 0, update/delete -EINVAL, and the map stays as it was."""
        s = self.s
        op = s.pick(("lookup", "update", "delete"))
        lines = [f"mov %r1, {s.int(0, 1)}", "call foreign_map", "mov %r1, %r0"] + self.key_on_stack(0)
        if op == "update":
            lines += ["stxdw [%r10-16], %r9", "mov %r3, %r10", "add %r3, -16", "mov %r4, 0"]
        return lines + [f"call map_{op}_elem", "add %r9, %r0"]

    def st_ldabs(self, in_target: bool) -> list[str]:
        s = self.s
        size = s.pick((1, 2, 4))
        off = s.int(0, max(0, self.mem_len - size)) if s.chance(0.9) else self.mem_len - size + s.int(1, 4)
        return ["mov %r1, %r6", f"ldabs{ {1: 'b', 2: 'h', 4: 'w'}[size]} {off}", "add %r9, %r0"]

    def st_ctx(self, in_target: bool) -> list[str]:
        s = self.s
        n = self.mem_len
        size = s.pick((1, 2, 4, 8)) if self.ptype == "raw" else s.pick((4, 8, 8))
        sfx = {1: "b", 2: "h", 4: "w", 8: "dw"}[size]
        if n < size:
            return ["mov %r8, 0"]
        off = s.int(0, (n - size) // size) * size
        if s.chance(0.08):
            off = s.pick((n, n - size + 1, -1, -size))
        if s.chance(0.25):     # a store: faults in a kprobe ctx (read-only) and in read-only mem
            return [f"stx{sfx} [%r6{off:+d}], %r9"]
        return [f"ldx{sfx} %r8, [%r6{off:+d}]", "add %r9, %r8"]

    def st_alu(self, in_target: bool) -> list[str]:
        s = self.s
        op = s.pick(("add", "sub", "xor", "mul", "or", "and", "lsh", "rsh", "arsh"))
        dst = s.pick(("%r7", "%r9"))
        if op in ("lsh", "rsh", "arsh"):
            return [f"{op} {dst}, {s.int(0, 63)}"]
        return [f"{op} {dst}, {self.imm()}"] if s.chance(0.6) else [f"{op} {dst}, {'%r9' if dst == '%r7' else '%r7'}"]

    def st_stack(self, in_target: bool) -> list[str]:
        off = self.s.pick((-32, -40, -48))
        return [f"stxdw [%r10{off}], %r9", f"ldxdw %r7, [%r10{off}]"]

    STATEMENTS = {"lookup": 6, "update": 4, "delete": 2, "tail": 3, "py": 2, "ctx": 4, "alu": 4, "stack": 1,
                  "ctxhelper": 1, "ldabs": 1, "forged": 1}

    def program(self, n: int, in_target: bool) -> str:
        s = self.s
        lines = ["mov %r6, %r1", f"mov %r7, {self.imm()}", "mov %r8, 0", f"mov %r9, {self.imm()}"]
        for _ in range(n):
            st = weighted(s, list(self.STATEMENTS.items()))
            lines += getattr(self, f"st_{st}")(in_target)
        return "\n".join(lines + ["mov %r0, %r9", "exit"]) + "\n"

    def case(self) -> SeamCase:
        s = self.s
        self.ptype = "kprobe" if s.chance(0.3) else "raw"
        self.mem_len = 168 if self.ptype == "kprobe" else s.pick((8, 16, 32, 64))
        lim = s.pick((None, 100_000, 100_000)) if s.chance(0.7) else s.int(1, 60)
        cfg = Config(insn_limit=lim, tail_call_limit=s.pick((32, 32, 0, 1, 3)),
                     opt_level=weighted(s, list(OPT_LEVELS.items())))
        targets = [self.program(s.int(1, max(1, self.size // 2)), True) if i < SEAM_SLOTS - 1 and s.chance(0.8)
                   else None for i in range(SEAM_SLOTS)]
        main = self.program(s.int(1, self.size), False)
        mems = [s.bytes(self.mem_len) if s.chance(0.7) else bytes(self.mem_len) for _ in range(2)]
        arr = list(s.bytes(ARR_ENTRIES * ARR_VALUE))
        hinit = {s.int(0, HASH_ENTRIES + 2): s.int(0, 1 << 40) for _ in range(s.int(0, HASH_ENTRIES - 1))}
        return SeamCase(main, targets, self.ptype, cfg, mems, arr, hinit,
                        readonly=self.ptype == "raw" and s.chance(0.1))


def random_seam_case(rnd: random.Random, size: int = 8) -> SeamCase:
    return SeamGenerator(RandomSource(rnd), size).case()


def seam_cases(size: int = 8):
    """Hypothesis strategy of SeamCases."""
    from hypothesis import strategies as st

    @st.composite
    def _cases(draw):
        return SeamGenerator(DrawSource(draw), size).case()
    return _cases()


def seam_self_check(case: SeamCase, mode: Mode) -> list[str]:
    """Differences between two interpreter runs with other map, mem and stack addresses (another runtime,
    another thread): non-empty means the seam program depends on addresses (a generator bug)."""
    first = seam_run(SeamRig(case, "interp"), mode)
    box = []
    t = threading.Thread(target=lambda: box.append(seam_run(SeamRig(case, "interp"), mode)))
    t.start()
    t.join()
    return seam_compare(first, box[0], True)
