"""The reference interpreter: exact RFC 9669 semantics in pure Python.

Each instruction is pre-decoded once into a small Python function `step(R, S) -> next_pc` specialised on
its registers and immediate (built from the expression tables below, compiled once per instruction shape).
R is the register list of the run, S its `RunState` (address space, frames, meter, helper context).
Block leaders are wrapped with the instruction meter, which charges a whole basic block on entry exactly
as the JIT does. Every memory access goes through the AddressSpace and faults with `RuntimeFault`.
A run is stopped from outside (watchdog.py: a timeout) by lowering its RunState's limit: the next meter
point (every cycle passes one) faults, and the run loop reports "timeout" instead of "insn_limit".
The JIT must match this module bit for bit; semantics notes are in docs/semantics.md.
"""
from __future__ import annotations

import threading

import numpy as np

from . import isa, watchdog
from .engine import Engine
from .errors import LoadError, RuntimeFault, fault, helper_fault, limit_fault
from .helpers.registry import TailCall
from .program import Program, block_costs, meter_points
from .runenv import used_maps_of

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
EXIT_PC = -1

# ---- ALU semantics: expressions over a (dst operand) and b (src operand), both already masked to the
# operation width W (mask MW); sa/sb are the signed views (only computed where used). ----
ALU_EXPR = {
    "add": "(a + b) & MW",
    "sub": "(a - b) & MW",
    "mul": "(a * b) & MW",
    "div": "(a // b) if b else 0",
    "sdiv": "_sdiv(sa, sb) & MW if b else 0",
    "mod": "(a % b) if b else a",
    "smod": "_smod(sa, sb) & MW if b else a",
    "or": "a | b",
    "and": "a & b",
    "xor": "a ^ b",
    "lsh": "(a << (b & SH)) & MW",
    "rsh": "a >> (b & SH)",
    "arsh": "(sa >> (b & SH)) & MW",
    "mov": "b",
    "movsx8": "_sx(b, 8) & MW",
    "movsx16": "_sx(b, 16) & MW",
    "movsx32": "_sx(b, 32) & MW",
    "neg": "(-a) & MW",
}
JMP_EXPR = {
    "jeq": "a == b", "jne": "a != b", "jgt": "a > b", "jge": "a >= b", "jlt": "a < b", "jle": "a <= b",
    "jset": "a & b", "jsgt": "sa > sb", "jsge": "sa >= sb", "jslt": "sa < sb", "jsle": "sa <= sb",
}


def _sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _sdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _smod(a: int, b: int) -> int:
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _bswap(v: int, nbytes: int) -> int:
    return int.from_bytes((v & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little"), "big")


_GLOBALS = {"_sx": _sx, "_sdiv": _sdiv, "_smod": _smod, "_bswap": _bswap, "M64": M64, "M32": M32,
            "RuntimeFault": RuntimeFault}
_FACTORIES: dict[tuple, object] = {}


def _factory(key: tuple, body: str):
    """Compile `def make(d, s, k, n, pc): def step(R, S): <body>; return step` once per key."""
    fn = _FACTORIES.get(key)
    if fn is None:
        src = "def make(d, s, k, n, pc, t, aux):\n    def step(R, S):\n" + \
              "".join("        " + ln + "\n" for ln in body.strip().splitlines()) + "    return step\n"
        ns = dict(_GLOBALS)
        exec(compile(src, f"<bpfjit.interp {key}>", "exec"), ns)
        fn = _FACTORIES[key] = ns["make"]
    return fn


def _alu_body(op: str, is64: bool, srcreg: bool) -> str:
    w = 64 if is64 else 32
    expr = ALU_EXPR[op].replace("MW", "M64" if is64 else "M32").replace("SH", "63" if is64 else "31")
    lines = []
    if op not in ("mov", "movsx8", "movsx16", "movsx32"):
        lines.append("a = R[d]" if is64 else "a = R[d] & M32")
    lines.append(("b = R[s]" if is64 else "b = R[s] & M32") if srcreg else "b = k")
    if "sa" in expr:
        lines.append(f"sa = a - {1 << w} if a >> {w - 1} else a")
    if "sb" in expr:
        lines.append(f"sb = b - {1 << w} if b >> {w - 1} else b")
    lines.append(f"R[d] = {expr}")
    lines.append("return n")
    return "\n".join(lines)


def _jmp_body(op: str, is64: bool, srcreg: bool) -> str:
    w = 64 if is64 else 32
    expr = JMP_EXPR[op]
    lines = ["a = R[d]" if is64 else "a = R[d] & M32",
             ("b = R[s]" if is64 else "b = R[s] & M32") if srcreg else "b = k"]
    if "sa" in expr:
        lines.append(f"sa = a - {1 << w} if a >> {w - 1} else a")
        lines.append(f"sb = b - {1 << w} if b >> {w - 1} else b")
    lines.append(f"return t if {expr} else n")
    return "\n".join(lines)


_ATOMIC_EXPR = {"add": "(old + v) & MASK", "or": "old | v", "and": "old & v", "xor": "old ^ v", "xchg": "v"}


def _atomic_body(op: str, nbytes: int) -> str:
    name = op[len("lock_"):]
    fetch = name.startswith("fetch_") or name == "xchg"
    base = name[len("fetch_"):] if name.startswith("fetch_") else name
    mask = "M64" if nbytes == 8 else "M32"
    lines = ["addr = (R[d] + k) & M64",
             f"old = S.atomic_load(addr, {nbytes}, pc)"]
    if base == "cmpxchg":
        lines += [f"if old == R[0] & {mask}:", f"    S.aspace.store(addr, {nbytes}, R[s], pc)", "R[0] = old"]
    else:
        lines += [f"v = R[s] & {mask}",
                  f"S.aspace.store(addr, {nbytes}, {_ATOMIC_EXPR[base].replace('MASK', mask)}, pc)"]
        if fetch:
            lines.append("R[s] = old")
    lines.append("return n")
    return "\n".join(lines)


class RunState:
    """Mutable state of one run (one per thread per run)."""
    __slots__ = ("aspace", "frames", "count", "limit", "stack_size", "max_depth", "helper_ctx",
                 "mem_start", "mem_len", "registry")

    def __init__(self, aspace, limit, stack_size, max_depth, helper_ctx, mem_start, mem_len, registry):
        self.aspace = aspace
        self.frames = []
        self.count = 0
        self.limit = limit
        self.stack_size = stack_size
        self.max_depth = max_depth
        self.helper_ctx = helper_ctx
        self.mem_start = mem_start
        self.mem_len = mem_len
        self.registry = registry

    def atomic_load(self, addr, size, pc):
        r = self.aspace.find(addr, size, 3)
        if r is None:
            raise self.aspace.fault("atomic", addr, size, pc)
        return self.aspace.load(addr, size, pc)


class _ImplicitExit(Exception):
    """Legacy packet load out of bounds: the program ends with r0 = 0 (kernel semantics)."""


_GLOBALS["_ImplicitExit"] = _ImplicitExit


class Interpreter(Engine):
    """Pre-decoded program ready to run in the reference interpreter (a `pipeline.Prepared` program)."""
    name = "interp"

    def __init__(self, prepared):
        super().__init__(prepared)
        self._count = 0
        self._last_mem = None
        self.code = self._build(prepared)
        self._tail_targets: dict[int, tuple[Program, "Interpreter"]] = {}

    def _tail_target(self, prog: Program) -> "Interpreter":
        """The interpreter of a tail-call target, prepared under this program's rules (config, helpers,
        runtime), cached."""
        hit = self._tail_targets.get(id(prog))
        if hit is None or hit[0] is not prog:
            hit = self._tail_targets[id(prog)] = (prog, Interpreter(self.prepared.tail_target(prog)))
        return hit[1]

    # ---- pre-decoding ----
    def _build(self, prepared):
        prog = prepared.program
        insns, forms = prog.insns, prog.forms
        n = len(insns)
        code: list = [None] * n
        for pc, f in enumerate(forms):
            if f is None:
                code[pc] = _bad_slot(pc)
                continue
            code[pc] = self._step(pc, insns, f, prepared)
        # charge each basic block on entry; compare with the limit at meter points
        points = meter_points(prog)
        for start, cost in block_costs(prog).items():
            code[start] = (_metered if start in points else _charged)(code[start], cost, start)
        return code

    def _step(self, pc: int, insns, f: isa.Form, prepared):
        ins = insns[pc]
        d, s, off, imm = ins.dst, ins.src, ins.off, ins.imm
        n = pc + 1
        op = f.op
        cls = f.cls
        if cls in (isa.CLS_ALU, isa.CLS_ALU64) and op not in ("le", "be", "bswap"):
            k = (imm & M64) if f.is64 else (imm & M32)
            return _factory(("alu", op, f.is64, f.srcreg), _alu_body(op, f.is64, f.srcreg))(d, s, k, n, pc, 0, 0)
        if op in ("le", "be", "bswap"):
            nbytes = f.width // 8
            if op == "le":
                body = f"R[d] = R[d] & {(1 << f.width) - 1}\nreturn n"
            else:
                body = f"R[d] = _bswap(R[d], {nbytes})\nreturn n"
            return _factory(("end", op, nbytes), body)(d, s, 0, n, pc, 0, 0)
        if op in isa.COND_JUMPS:
            k = (imm & M64) if f.is64 else (imm & M32)
            return _factory(("jmp", op, f.is64, f.srcreg), _jmp_body(op, f.is64, f.srcreg))(
                d, s, k, n, pc, n + off, 0)
        if op == "ja":
            return _factory(("ja",), "return t")(d, s, 0, n, pc, n + off, 0)
        if op == "ja32":
            return _factory(("ja",), "return t")(d, s, 0, n, pc, n + imm, 0)
        nbytes = f.width // 8
        if op == "ldx":
            return _factory(("ldx", nbytes), f"R[d] = S.aspace.load((R[s] + k) & M64, {nbytes}, pc)\nreturn n")(
                d, s, off, n, pc, 0, 0)
        if op == "ldxs":
            return _factory(("ldxs", nbytes),
                            f"R[d] = S.aspace.load((R[s] + k) & M64, {nbytes}, pc, True) & M64\nreturn n")(
                d, s, off, n, pc, 0, 0)
        if op == "st":
            return _factory(("st", nbytes), f"S.aspace.store((R[d] + k) & M64, {nbytes}, aux, pc)\nreturn n")(
                d, s, off, n, pc, 0, imm)
        if op == "stx":
            return _factory(("stx", nbytes), f"S.aspace.store((R[d] + k) & M64, {nbytes}, R[s], pc)\nreturn n")(
                d, s, off, n, pc, 0, 0)
        if op.startswith("lock_"):
            return _factory(("atomic", op, nbytes), _atomic_body(op, nbytes))(d, s, off, n, pc, 0, 0)
        if op.startswith("lddw"):
            return _factory(("lddw",), "R[d] = k\nreturn n")(d, s, prepared.lddw[pc], pc + 2, pc, 0, 0)
        if op in ("ldabs", "ldind"):
            src_expr = "R[s] + k" if op == "ldind" else "k"
            skf = ""
            if prepared.ptype.packet is not None:     # SKF_NET_OFF / SKF_LL_OFF relative loads (packets.py)
                from .packets import net_header_off
                from .progtypes import SKF_LL_OFF, SKF_NET_OFF
                skf = (f"if {SKF_NET_OFF} <= o < 0:\n    o = o - {SKF_NET_OFF} + {net_header_off(prepared.ptype)}\n"
                       f"elif {SKF_LL_OFF} <= o < {SKF_NET_OFF}:\n    o = o - {SKF_LL_OFF}\n")
            body = (f"o = ({src_expr}) & M32\no = o - (1 << 32) if o >> 31 else o\n" + skf +
                    f"if o < 0 or o + {nbytes} > S.mem_len:\n    raise _ImplicitExit\n"
                    f"R[0] = _bswap(S.aspace.load(S.mem_start + o, {nbytes}, pc), {nbytes})\nreturn n")
            return _factory((op, nbytes, skf), body)(d, s, imm, n, pc, 0, 0)
        if op == "exit":
            return _exit_step
        if op == "call_local":
            return _call_local_factory(pc, n + imm)
        if op in ("call", "call_btf"):
            return _helper_step(prepared.calls[(op, imm)].py, n, pc)
        if op == "callx":
            return _callx_step(d, n, pc)
        raise LoadError(f"{f.mnemonic} is not implemented by the interpreter", pc)  # pragma: no cover

    # ---- running ----
    @property
    def last_count(self) -> int:
        return self._count

    @property
    def last_mem(self):
        return self._last_mem

    def run(self, mem=None, readonly: bool = False) -> int:
        env = self.env
        run = env.open(mem, readonly)
        self._last_mem = run.buf
        return self._exec(run.aspace, run.r1, run.r2, env.stack().end, env.helper_ctx(run.aspace), run.r1, run.r2)

    def run_batch(self, records, perms: int):
        env = self.env
        n, stride = records.shape
        out = np.zeros(n, dtype=np.uint64)
        top = env.stack().end
        for i in range(n):
            region = env.ctx_region(records[i], perms, "record")
            aspace = env.address_space(region)
            r1, r2 = env.entry_regs(region)
            try:
                out[i] = self._exec(aspace, r1, r2, top, env.helper_ctx(aspace), r1, r2)
            except RuntimeFault as e:
                e.record = i
                raise
        return out

    def run_packets(self, prun) -> np.ndarray:
        """One run per packet of a packets.PacketRun (the JIT's bpf_run_pkts loop, in Python)."""
        from .memory import PERM_R, AddressSpace, Region
        env = self.env
        out = np.zeros(prun.n, dtype=np.uint64)
        k, uapi = prun.kctx, prun.uapi
        ctx_r = Region("ctx", k[:uapi], prun.ctx_perms)
        pkt_r = prun.region = Region("packet", np.zeros(1, np.uint8), prun.pkt_perms)
        aspace = AddressSpace([ctx_r, env.stack(), pkt_r, Region("ctx_hidden", k[uapi:], PERM_R),
                               *env.runtime_regions()])
        hctx = env.helper_ctx(aspace)
        hctx.pkt = prun
        top = env.stack().end
        for i in range(prun.n):
            prun.load(i)
            data, end, meta, _, _ = prun.bounds()
            pkt_r.rebind(prun.buffer(meta, end))
            try:
                out[i] = self._exec(aspace, ctx_r.start, uapi, top, hctx, data, end - data)
            except RuntimeFault as e:
                e.record = i
                raise
            prun.finish(i)
        return out

    def bench(self, mem, n: int) -> int:
        env = self.env
        run = env.open(mem, False)
        self._last_mem = run.buf
        ctx, top = env.helper_ctx(run.aspace), env.stack().end
        r0 = 0
        for _ in range(n):
            r0 = self._exec(run.aspace, run.r1, run.r2, top, ctx, run.r1, run.r2)
        return r0

    def _exec(self, aspace, r1: int, r2: int, stack_top: int, helper_ctx, mem_start: int = 0,
              mem_len: int = 0) -> int:
        """Run from pc 0 with r1, r2 and r10 = stack_top; mem_start/mem_len bound legacy packet loads."""
        cfg = self.config
        helper_ctx.tail_calls = 0            # per run (bench reuses one context)
        helper_ctx.used_maps = used_maps_of(self.prepared)
        limit = cfg.insn_limit if cfg.insn_limit is not None else 1 << 62
        S = RunState(aspace, limit, cfg.stack_size, cfg.max_call_depth, helper_ctx, mem_start, mem_len,
                     self.registry)
        stop = watchdog.ARMED.get(threading.get_ident()) if watchdog.ARMED else None
        if stop is not None:                 # a timeout is armed: let the watchdog reach this run
            stop.interp = S
            if stop.fired:
                S.limit = -1
        R = [0] * 11
        R[1] = r1 & M64
        R[2] = r2 & M64
        R[10] = stack_top
        code = self.code
        pc = 0
        try:
            while True:
                try:
                    while pc >= 0:
                        pc = code[pc](R, S)
                    break
                except TailCall as tc:   # continue in the target: fresh registers and frame, same meter
                    target = self._tail_target(tc.program)
                    code = target.code
                    helper_ctx.used_maps = used_maps_of(target.prepared)
                    R = [0] * 11
                    R[1] = tc.ctx & M64
                    R[10] = stack_top
                    S.frames.clear()
                    pc = 0
        except _ImplicitExit:
            R[0] = 0
        except RuntimeFault as e:
            if stop is not None and stop.fired and e.kind == "insn_limit":
                raise fault("timeout", e.pc) from None
            raise
        finally:
            self._count = S.count
        return R[0]


def _stop_fire(ident: int, reason: int, req) -> None:
    """watchdog hook: a timeout stops the interpreter run of that thread at its next meter point."""
    s = req.interp if req is not None else None
    if s is not None:
        s.limit = -1


watchdog.add_hook(_stop_fire)


def _metered(inner, cost: int, pc: int):
    def step(R, S):
        c = S.count + cost
        if c > S.limit:
            raise limit_fault("insn_limit", pc, S.limit)
        S.count = c
        return inner(R, S)
    return step


def _charged(inner, cost: int, pc: int):
    def step(R, S):
        S.count += cost
        return inner(R, S)
    return step


def _bad_slot(pc: int):
    def step(R, S):  # pragma: no cover - validation forbids jumping here
        raise RuntimeFault("load", pc, "executed the second half of an lddw")
    return step


def _exit_step(R, S):
    if not S.frames:
        return EXIT_PC
    ret, saved = S.frames.pop()
    R[6], R[7], R[8], R[9], R[10] = saved
    return ret


def _call_local_factory(pc: int, target: int):
    n = pc + 1

    def step(R, S):
        if len(S.frames) + 1 >= S.max_depth:
            raise limit_fault("call_depth", pc, S.max_depth)
        S.frames.append((n, (R[6], R[7], R[8], R[9], R[10])))
        R[10] = R[10] - S.stack_size
        return target
    return step


def _helper_step(fn, n: int, pc: int):
    def step(R, S):
        ctx = S.helper_ctx
        ctx.pc = pc
        R[0] = _call_helper(fn, ctx, R, pc) & M64
        return n
    return step


def _call_helper(fn, ctx, R, pc):
    try:
        return int(fn(ctx, R[1], R[2], R[3], R[4], R[5]))
    except TailCall:
        raise
    except Exception as e:  # a helper's own failure is the program's fault, never the host's
        raise helper_fault(e, pc, ctx.aspace.locate) from e


def _callx_step(d: int, n: int, pc: int):
    def step(R, S):
        h = S.registry.get(R[d])
        if h is None:
            raise fault("bad_call", pc)
        ctx = S.helper_ctx
        ctx.pc = pc
        R[0] = _call_helper(h.py, ctx, R, pc) & M64
        return n
    return step
