"""The verifier proper: abstract interpretation of every path of a program (depth first, one pending
branch per conditional jump whose both sides are possible), with state pruning at prune points, an
instruction budget, bpf-to-bpf call frames, and the log. Per-instruction rules: ALU (scalar transfer
functions, pointer arithmetic rules), jumps (range refinement, null checks, packet ranges learned from
comparisons with the packet's end), memory (access.py), helper calls (helpers.py), exit (r0, references,
frames).

What is proven when `Verifier.run` returns: every path from pc 0 ends at an exit (or a tail call's exit),
every memory access is inside its object, every helper gets arguments of its prototype's types, r0 at
exit is an initialised scalar and every acquired reference is released.
"""
from __future__ import annotations

from .. import isa
from ..errors import VerifierError
from ..progtypes import ProgType, prog_type as get_prog_type
from . import scalar as S
from .access import MAX_PACKET_OFF, MAX_VAR_OFF, check_mem, err, loaded
from .cfg import CFG
from .disasm import text as disasm
from .helpers import check_call, raw_ctx
from .regs import (AT_PKT_END, BEYOND_PKT_END, CTX, FP, MAP_PTR, MAP_VALUE, MEM, MEMLEN_ID, NOT_INIT,
                   NOT_INIT_REG, OR_NULL, PKT, PKT_END, PKT_META, PKT_TYPES, SCALAR, UNKNOWN_REG, Reg, const,
                   ptr, scalar)
from .state import State, rewrite_regs, fmt_regs, fmt_state, new_frame, regs_key, same_stacks, states_equal

INSN_LIMIT = 1_000_000
MAX_STATES_PER_INSN = 64
MAX_LOOP_STATES = 20_000     # distinct register states remembered per loop head for loop detection
CHECKPOINT_EVERY = 8          # processed instructions between stored states (loop heads: always)
COMBINED_STACK = 512
BITWISE = ("and", "or", "xor")
LD_ABS_TYPES = frozenset({"raw", "socket_filter", "sched_cls", "sched_act"})   # the kernel's may_access_skb + raw


class Checkpoint:
    """A stored state, its parent checkpoint on the path and the number of paths still open below it."""
    __slots__ = ("state", "parent", "branches", "in_seen")

    def __init__(self, state, parent):
        self.state, self.parent, self.branches, self.in_seen = state, parent, 1, False


class Verifier:
    def __init__(self, program, runtime=None, helpers=None, config=None, mem_size=None, log_level=0,
                 allow_loops=True, prog_type=None, insn_limit=INSN_LIMIT):
        from ..program import DEFAULT_CONFIG
        self.program = program
        self.runtime = runtime
        self.config = config or DEFAULT_CONFIG
        if helpers is None:
            helpers = runtime.helpers if runtime is not None else _default_helpers()
        self.helpers = helpers
        self.mem_size = mem_size
        self.log_level = log_level
        self.allow_loops = allow_loops
        pt = prog_type or program.prog_type
        self.ptype = pt if isinstance(pt, ProgType) else get_prog_type(pt)
        self.stack_size = self.config.stack_size
        self.max_frames = self.config.max_call_depth
        self.insns = program.insns
        self.forms = program.forms
        self.insn_limit = insn_limit
        self.log: list[str] = []
        self.processed = 0
        self.last_checkpoint = -CHECKPOINT_EVERY
        self.total_states = 0
        self.peak = 0
        self.max_states = 0
        self._next_id = 0
        self.depth: dict[int, int] = {}
        self.access_types: dict[int, set] = {}   # pc -> pointer types its memory access was proven for
        self.calls: dict[int, set] = {}
        self.explored: dict[int, list] = {}      # pc -> checkpoints compared for pruning
        self.seen: dict[int, dict] = {}          # pc -> register key -> checkpoints (loop detection)

    # ---- small services for the rule modules ----
    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def note_depth(self, subprog: int, depth: int) -> None:
        if depth > self.depth.get(subprog, 0):
            self.depth[subprog] = depth

    def helper_args(self, op: str, imm: int) -> int:
        h = self.helpers.get(imm) if op == "call" else self.helpers.get_btf(imm)
        return len(h.args) if h is not None else 5

    # ---- driver ----
    def run(self) -> None:
        self._seed_checks()
        self.cfg = CFG(self.program, self.helper_args, self.allow_loops)
        self.handlers = self._handlers()
        st = self._initial_state()
        pending = [(0, -1, st)]
        while pending:
            pc, src, st = pending.pop()
            if self.log_level >= 2 and src >= 0:
                self.log.append(f"from {src} to {pc}: {fmt_state(st)}")
            try:
                self._walk(pc, st, pending)
            except VerifierError as e:
                if self.log_level == 1:
                    self._log_trail(st)
                self.log.append(e.reason)
                raise
        self._check_stack_depth()

    def _seed_checks(self) -> None:
        p = self.program
        if self.ptype.needs_kern_version:
            want = self.runtime.kern_version if self.runtime is not None else None
            if (want is not None and p.kern_version != want) or (want is None and not p.kern_version):
                need = f" {want:#x} (the runtime's)" if want is not None else ""
                raise VerifierError(f"{self.ptype.name} program needs kern_version{need}, has "
                                    f"{p.kern_version:#x}", None, "kern_version")

    def _initial_state(self) -> State:
        f = new_frame()
        regs = f.regs
        regs[10] = Reg(FP, S.ZERO, frame=0)
        if self.ptype.name == "raw":
            n = self.mem_size or 0
            regs[1] = ptr(MEM, size=n)
            regs[2] = Reg(SCALAR, S.unsigned_range(n, S.M64) if n else S.UNKNOWN, id=MEMLEN_ID)
        else:
            regs[1] = ptr(CTX)
        return State([f])

    def _log_trail(self, st) -> None:
        pcs = []
        t = st.trail
        while t is not None:
            pcs.append(t[0])
            t = t[1]
        for pc in reversed(pcs):
            self.log.append(f"{pc}: ({self.insns[pc].opcode:02x}) {disasm(self.program, pc, self.helpers)}")

    # ---- pruning ----
    def _visited(self, pc: int, st: State) -> bool:
        live = self.cfg.live[pc]
        lst = self.explored.get(pc)
        if lst is None:
            lst = self.explored[pc] = []
            seen = self.seen[pc] = {}
        else:
            for cp in lst:
                if cp.branches == 0 and states_equal(cp.state, st, live):
                    if self.log_level >= 2:
                        self.log.append(f"{pc}: safe")
                    self._path_done(st)
                    return True
            seen = self.seen[pc]
        head = pc in self.cfg.loop_heads
        if not head and self.processed - self.last_checkpoint < CHECKPOINT_EVERY:
            return False                         # the kernel's heuristic: not every prune point is stored
        self.last_checkpoint = self.processed
        cp = Checkpoint(st.copy(), st.parent)
        if head:                                 # every cycle passes a loop head: detect repeats there
            key = regs_key(st, live)
            bucket = seen.get(key)
            if bucket is not None:
                for old in bucket:
                    if old.branches and same_stacks(old.state, st):   # the same state again on its path
                        raise err(f"infinite loop detected at insn {pc}", pc)
                bucket.append(cp)
                cp.in_seen = True
            elif len(seen) < MAX_LOOP_STATES:    # beyond: the instruction budget ends endless loops
                seen[key] = [cp]
                cp.in_seen = True
        st.parent = cp
        self.total_states += 1
        if len(lst) < MAX_STATES_PER_INSN:
            lst.append(cp)
        else:                                    # keep the newest states for pruning
            i = self.total_states % MAX_STATES_PER_INSN
            if not lst[i].in_seen:
                lst[i].state = None              # only its branch count is still needed
            lst[i] = cp
        if len(lst) > self.max_states:
            self.max_states = len(lst)
        return False

    @staticmethod
    def _path_done(st: State) -> None:
        cp = st.parent
        while cp is not None:
            cp.branches -= 1
            if cp.branches:
                break
            cp = cp.parent

    def _push(self, pending, pc: int, src: int, st: State) -> None:
        if st.parent is not None:
            st.parent.branches += 1
        pending.append((pc, src, st))

    # ---- one path ----
    def _walk(self, pc: int, st: State, pending) -> None:
        prune = self.cfg.prune
        forms, insns, handlers = self.forms, self.insns, self.handlers
        log2 = self.log_level >= 2
        trail = self.log_level == 1
        while True:
            if pc in prune and self._visited(pc, st):
                return
            self.processed += 1
            if self.processed > self.insn_limit:
                raise err(f"BPF program is too large. Processed {self.processed} insn", pc)
            if trail:
                st.trail = (pc, st.trail)
            f = forms[pc]
            ins = insns[pc]
            before = list(st.cur.regs) if log2 else None
            depth_before = len(st.frames)
            try:
                nxt = handlers[pc](pc, f, ins, st, pending)
            except VerifierError:
                if log2:
                    self.log.append(f"{pc}: ({ins.opcode:02x}) {disasm(self.program, pc, self.helpers)}")
                raise
            if log2:
                self._log_insn(pc, st, before, depth_before)
            if nxt < 0:
                self._path_done(st)
                return
            pc = nxt

    def _log_insn(self, pc, st, before, depth_before) -> None:
        line = f"{pc}: ({self.insns[pc].opcode:02x}) {disasm(self.program, pc, self.helpers)}"
        if len(st.frames) == depth_before:
            regs = st.cur.regs
            changed = [r for r in range(11) if regs[r] is not before[r]]
            text = fmt_regs(st.cur, only=changed, written=changed) if changed else ""
            if text:
                line += " ; " + text
        else:
            line += " ; " + fmt_state(st)
        self.log.append(line)

    # ---- instructions: one handler per family (`_FAMILY`), each returns the next pc (-1: path ends) ----
    def _handlers(self) -> list:
        out: list = []
        for f in self.forms:
            if f is None:
                out.append(None)
                continue
            op = f.op
            fam: str | None
            if f.cls in (isa.CLS_ALU, isa.CLS_ALU64):
                fam = "alu"
            elif op in isa.COND_JUMPS:
                fam = "cond"
            elif op.startswith("lock_"):
                fam = "atomic"
            elif op.startswith("lddw"):
                fam = "lddw"
            else:
                fam = _FAMILY.get(op)
                if fam is None:
                    raise VerifierError(f"unsupported instruction {f.mnemonic}", None)
            out.append(getattr(self, "_h_" + fam))
        return out

    def _h_alu(self, pc, f, ins, st, pending) -> int:
        self._alu(pc, f, ins, st)
        return pc + 1

    def _h_cond(self, pc, f, ins, st, pending) -> int:
        return self._cond_jump(pc, f, ins, st, pending)

    def _h_ldx(self, pc, f, ins, st, pending) -> int:
        self._read_reg(st, ins.src, pc)
        r = check_mem(self, st, pc, ins.src, ins.off, f.width // 8, "read")
        assert r is not None                    # a read returns the loaded register
        if f.op == "ldxs":
            r = scalar(S.sign_extend(r.s, f.width, 64)) if r.type is SCALAR else loaded(f.width // 8)
        st.cur.regs[ins.dst] = r
        return pc + 1

    def _h_stx(self, pc, f, ins, st, pending) -> int:
        self._read_reg(st, ins.dst, pc)
        val = self._read_reg(st, ins.src, pc)
        check_mem(self, st, pc, ins.dst, ins.off, f.width // 8, "write", val)
        return pc + 1

    def _h_st(self, pc, f, ins, st, pending) -> int:
        self._read_reg(st, ins.dst, pc)
        check_mem(self, st, pc, ins.dst, ins.off, f.width // 8, "write", const(ins.imm))
        return pc + 1

    def _h_atomic(self, pc, f, ins, st, pending) -> int:
        return self._atomic(pc, f, ins, st)

    def _h_lddw(self, pc, f, ins, st, pending) -> int:
        st.cur.regs[ins.dst] = self._lddw(pc, f.op, ins)
        return pc + 2

    def _h_ja(self, pc, f, ins, st, pending) -> int:
        return pc + 1 + (ins.off if f.op == "ja" else ins.imm)

    def _h_exit(self, pc, f, ins, st, pending) -> int:
        return self._exit(pc, st)

    def _h_call(self, pc, f, ins, st, pending) -> int:
        h = self.helpers.get(ins.imm) if f.op == "call" else self.helpers.get_btf(ins.imm)
        if h is None:
            raise err(f"invalid func unknown#{ins.imm}", pc)
        check_call(self, st, pc, h)
        return pc + 1

    def _h_callx(self, pc, f, ins, st, pending) -> int:
        r = self._read_reg(st, ins.dst, pc)
        if r.type is not SCALAR or not r.s.is_const:
            raise err(f"callx R{ins.dst}: the helper id is not a known constant", pc)
        h = self.helpers.get(r.s.value)
        if h is None:
            raise err(f"invalid func unknown#{r.s.value}", pc)
        check_call(self, st, pc, h)
        return pc + 1

    def _h_call_local(self, pc, f, ins, st, pending) -> int:
        return self._call_local(pc, ins, st)

    def _h_ldabs(self, pc, f, ins, st, pending) -> int:
        """The kernel's check_ld_abs: program types with an skb (LD_ABS_TYPES), r6 the unmodified context,
        r1-r5 clobbered, r0 an unknown scalar (a load past the end exits with r0 = 0). Raw programs keep
        r1-r5: bpfjit's engines define the loads over the run's mem without a call."""
        if self.ptype.name not in LD_ABS_TYPES:
            raise err("BPF_LD_[ABS|IND] instructions not allowed for this program type", pc)
        if ins.dst != 0 or ins.off != 0 or (f.op == "ldabs" and ins.src != 0):
            raise err("BPF_LD_[ABS|IND] uses reserved fields", pc)
        regs = st.cur.regs
        r6 = self._read_reg(st, 6, pc)
        if st.refs:
            raise err("BPF_LD_[ABS|IND] cannot be mixed with socket references", pc)
        if r6.type is not CTX and not raw_ctx(self, r6):
            raise err("at the time of BPF_LD_ABS|IND R6 != pointer to skb", pc)
        if f.op == "ldind":
            r = self._read_reg(st, ins.src, pc)
            if r.type is not SCALAR:
                raise err(f"R{ins.src} type={r.type} expected=scalar", pc)
        if r6.off or not (r6.s.is_const and r6.s.value == 0):
            raise err(f"dereference of modified ctx ptr R6 off={r6.off + r6.s.value} disallowed", pc)
        if self.ptype.name != "raw":      # the kernel's types: a helper call in disguise clobbers r1-r5
            for k in range(1, 6):
                regs[k] = NOT_INIT_REG
        regs[0] = UNKNOWN_REG
        return pc + 1

    def _read_reg(self, st, r: int, pc: int) -> Reg:
        reg = st.cur.regs[r]
        if reg.type is NOT_INIT:
            raise err(f"R{r} !read_ok", pc)
        return reg

    # ---- ALU ----
    def _alu(self, pc, f, ins, st) -> None:
        regs = st.cur.regs
        op = f.op
        d = ins.dst
        w = 64 if f.is64 else 32
        if f.srcreg:
            src = self._read_reg(st, ins.src, pc)
        else:
            src = const(ins.imm if f.is64 else ins.imm & S.M32)
        if op == "mov":
            if src.type is SCALAR:
                if w == 64:
                    regs[d] = src
                elif src.s.is_const:
                    regs[d] = const(src.s.value & S.M32)
                else:
                    regs[d] = scalar(S.alu("mov", src.s, src.s, 32))
            else:
                regs[d] = src if w == 64 else UNKNOWN_REG
            return
        if op.startswith("movsx"):
            bits = int(op[5:])
            regs[d] = scalar(S.sign_extend(src.s, bits, w)) if src.type is SCALAR else UNKNOWN_REG
            return
        dst = self._read_reg(st, d, pc)
        if op in ("neg", "le", "be", "bswap"):
            if dst.type is not SCALAR:
                raise err(f"R{d} pointer arithmetic with {op} operator prohibited", pc)
            regs[d] = scalar(_swap(op, dst.s, f.width, w))
            return
        if dst.type is SCALAR and src.type is SCALAR:
            regs[d] = scalar(S.alu(op, dst.s, src.s, w))
            return
        regs[d] = self._ptr_alu(pc, op, w, d, dst, src)

    def _ptr_alu(self, pc, op, w, d, dst: Reg, src: Reg) -> Reg:
        if w == 32:
            raise err(f"R{d} 32-bit pointer arithmetic prohibited", pc)
        if op in BITWISE:
            raise err(f"R{d} bitwise operator {_OPSYM[op]} on pointer prohibited", pc)
        if op not in ("add", "sub"):
            raise err(f"R{d} pointer arithmetic with {_OPSYM.get(op, op)} operator prohibited", pc)
        if dst.is_ptr and src.is_ptr:
            if op == "sub" and dst.type in PKT_TYPES and src.type in PKT_TYPES:
                return UNKNOWN_REG             # a distance inside the packet (data_end - data)
            raise err(f"R{d} pointer {_OPSYM[op]} pointer prohibited", pc)
        if src.is_ptr:
            if op == "sub":
                raise err(f"R{d} tried to subtract pointer from scalar", pc)
            dst, src = src, dst
        t = dst.type
        if t in OR_NULL:
            raise err(f"R{d} pointer arithmetic on {t} prohibited, null-check it first", pc)
        if t is MAP_PTR or t is PKT_END:
            raise err(f"R{d} pointer arithmetic on {t} prohibited", pc)
        s = src.s
        if s.is_const:
            c = S.sx64(s.value)
            off = dst.off + (c if op == "add" else -c)
            if not -MAX_VAR_OFF < off < MAX_VAR_OFF:
                raise err(f"R{d} pointer offset {off} is not allowed", pc)
            if dst.range < 0 and off != dst.off:   # at / past the end: moving forward stays past it
                return dst.but(off=off, range=BEYOND_PKT_END if off > dst.off else 0)
            return dst.but(off=off)
        if s.smin <= -MAX_VAR_OFF or s.smax >= MAX_VAR_OFF:
            raise err(f"math between {t} pointer and register with unbounded min value is not allowed", pc)
        var = S.alu(op, dst.s, s, 64)
        if var.smin <= -MAX_VAR_OFF or var.smax >= MAX_VAR_OFF:
            raise err(f"R{d} unbounded memory access, make sure to bounds check any such access", pc)
        if t is PKT or t is PKT_META:          # a new base: no range proven for it yet
            return dst.but(s=var, id=self.new_id(), range=0)
        return dst.but(s=var)

    # ---- atomics ----
    def _atomic(self, pc, f, ins, st) -> int:
        regs = st.cur.regs
        self._read_reg(st, ins.dst, pc)
        val = self._read_reg(st, ins.src, pc)
        name = f.op[5:]
        if val.type is not SCALAR:
            raise err(f"R{ins.src} leaks addr into mem", pc)
        if name == "cmpxchg":
            r0 = self._read_reg(st, 0, pc)
            if r0.type is not SCALAR:
                raise err("R0 leaks addr into mem", pc)
        size = f.width // 8
        check_mem(self, st, pc, ins.dst, ins.off, size, "atomic")
        if name == "cmpxchg":
            regs[0] = loaded(size)
        elif name.startswith("fetch") or name == "xchg":
            regs[ins.src] = loaded(size)
        return pc + 1

    # ---- lddw ----
    def _lddw(self, pc, op, ins) -> Reg:
        if op == "lddw":
            return const((ins.imm & S.M32) | ((self.insns[pc + 1].imm & S.M32) << 32))
        if op in ("lddw_var_addr", "lddw_code_addr"):
            raise err(f"lddw {op[5:]} (src {ins.src}) is not supported", pc)
        m = self._map(pc, op, ins.imm)
        if op in ("lddw_map_fd", "lddw_map_idx"):
            return ptr(MAP_PTR, map=m)
        off = self.insns[pc + 1].imm
        if m.direct_value_addr(off) is None or not 0 <= off < m.value_size:
            raise err(f"invalid access to map value pointer, value_size={m.value_size} off={off}", pc)
        return ptr(MAP_VALUE, map=m, off=off)

    def _map(self, pc, op, imm):
        rt = self.runtime
        if rt is None:
            raise err(f"lddw {op[5:]} needs a runtime to resolve map {imm}", pc)
        try:
            if op in ("lddw_map_fd", "lddw_map_value"):
                return rt.map(imm)
            maps = self.program.maps or []
            m = maps[imm]
            return rt.map(m) if isinstance(m, (str, int)) else m
        except (KeyError, IndexError):
            raise err(f"fd {imm} is not pointing to valid bpf_map", pc) from None

    # ---- jumps ----
    def _cond_jump(self, pc, f, ins, st, pending) -> int:
        op = f.op
        w = 64 if f.is64 else 32
        regs = st.cur.regs
        a = self._read_reg(st, ins.dst, pc)
        b = self._read_reg(st, ins.src, pc) if f.srcreg else const(ins.imm if w == 64 else ins.imm & S.M32)
        target = pc + 1 + ins.off
        if a.type is SCALAR and b.type is SCALAR:
            taken = S.refine(op, a.s, b.s, w, True)
            fall = S.refine(op, a.s, b.s, w, False)
            if taken is None and fall is None:       # contradictory facts: the path itself is impossible
                return -1
            if taken is not None and fall is not None:
                other = st.copy()
                self._set_pair(other, ins, f, taken, a, b)
                self._set_pair(st, ins, f, fall, a, b)
                self._push(pending, target, pc, other)
                return pc + 1
            if taken is not None:
                self._set_pair(st, ins, f, taken, a, b)
                return target
            self._set_pair(st, ins, f, fall, a, b)
            return pc + 1
        # pointers
        if a.type in PKT_TYPES and b.type in PKT_TYPES and w == 64 and op != "jset":
            return self._pkt_jump(pc, op, ins, a, b, st, pending, target)
        if w == 32 or op == "jset":
            raise err(f"R{ins.dst if a.is_ptr else ins.src} pointer comparison prohibited", pc)
        zero_b = b.type is SCALAR and b.s.is_const and b.s.value == 0
        zero_a = a.type is SCALAR and a.s.is_const and a.s.value == 0
        if (zero_b or zero_a) and op in ("jeq", "jne"):
            p, preg = (a, ins.dst) if zero_b else (b, ins.src)
            if p.type in OR_NULL:
                other = st.copy()
                null_st, ok_st = (other, st) if op == "jeq" else (st, other)
                self._mark_null(null_st, p, True)
                self._mark_null(ok_st, p, False)
                self._push(pending, target, pc, other)
                return pc + 1
            if self._maybe_null(p):
                other = st.copy()
                self._push(pending, target, pc, other)
                return pc + 1
            return target if op == "jne" else pc + 1     # a valid pointer is never NULL
        if a.is_ptr and b.is_ptr and a.type is b.type and a.frame == b.frame and a.map is b.map:
            other = st.copy()
            self._push(pending, target, pc, other)
            return pc + 1
        raise err(f"R{ins.dst if a.is_ptr else ins.src} pointer comparison prohibited", pc)

    def _set_pair(self, st, ins, f, pair, a, b) -> None:
        regs = st.cur.regs
        na, nb = pair
        if na is not a.s:
            regs[ins.dst] = a.but(s=na) if a.id == MEMLEN_ID else scalar(na)
        if f.srcreg and nb is not b.s and ins.src != ins.dst:
            regs[ins.src] = b.but(s=nb) if b.id == MEMLEN_ID else scalar(nb)
        for r, n in ((a, na), (b, nb)):
            if r.id == MEMLEN_ID and n is not r.s:
                self._learn_mem_len(st, n)

    @staticmethod
    def _learn_mem_len(st, s) -> None:
        """The length scalar is now known to be `s`: its copies become `s`, and the run's memory (every
        pointer to it, in registers and spills of every frame) is at least s.umin bytes long."""
        n = min(s.umin, 1 << 32)

        def learn(r: Reg) -> Reg | None:
            if r.id == MEMLEN_ID and r.type is SCALAR:
                return r.but(s=s)
            if r.type is MEM and not r.ref and r.size < n:
                return r.but(size=n)
            return None
        rewrite_regs(st, learn)

    @staticmethod
    def _maybe_null(p: Reg) -> bool:
        """Not provably non-NULL (both sides explored): raw memory of unknown size, packet pointers (as the
        kernel: their addresses are the runtime's)."""
        return (p.type is MEM and p.size == 0 and not p.ref) or p.type in PKT_TYPES

    # ---- packet pointers (the kernel's try_match_pkt_pointers / is_pkt_ptr_branch_taken) ----
    def _pkt_jump(self, pc, op, ins, a, b, st, pending, target) -> int:
        """A 64-bit comparison of two pointers into the packet. `pkt' OP pkt_end` (and `pkt_meta' OP pkt`)
        in any order with an unsigned >, >=, <, <= teaches the side where pkt' <= pkt_end that the bytes
        before pkt' are in the packet, == and != the side where they are equal; other comparisons teach
        nothing."""
        pa, pb = ins.dst, ins.src
        if op in _FLIP and (b.type is PKT and a.type is PKT_END or b.type is PKT_META and _init_pkt(a)):
            a, b, pa, pb, op = b, a, pb, pa, _FLIP[op]      # now: pointer OP its end
        if op in ("jeq", "jne"):
            return self._pkt_eq_jump(pc, op, a, b, st, pending, target)
        if op not in _FLIP or not (a.type is PKT and b.type is PKT_END or a.type is PKT_META and _init_pkt(b)):
            other = st.copy()
            self._push(pending, target, pc, other)
            return pc + 1
        # a's side where a < end (open) / a <= end, the other where a >= end / a > end
        good_taken = op in ("jlt", "jle")
        good_open = op in ("jlt", "jge")
        if b.type is PKT_END and a.range < 0:                # known at / beyond the end: one side only
            if a.range == BEYOND_PKT_END or good_open:
                return pc + 1 if good_taken else target
        other = st.copy()
        good, bad = (other, st) if good_taken else (st, other)
        self._find_good_pkt(good, a, good_open)
        if a.type is PKT and b.type is PKT_END:
            bad.frames[-1].regs[pa] = a.but(range=AT_PKT_END if good_open else BEYOND_PKT_END)
        self._push(pending, target, pc, other)
        return pc + 1

    def _pkt_eq_jump(self, pc, op, a, b, st, pending, target) -> int:
        """`pkt' == pkt_end` (or `pkt_meta' == pkt`), either order: where they are equal the bytes before
        pkt' are in the packet; where they differ nothing is learned. A pointer known to be past the end
        is never equal to it."""
        if b.type is PKT and a.type is PKT_END or b.type is PKT_META and _init_pkt(a):
            a, b = b, a
        if not (a.type is PKT and b.type is PKT_END or a.type is PKT_META and _init_pkt(b)):
            self._push(pending, target, pc, st.copy())
            return pc + 1
        eq_taken = op == "jeq"
        if b.type is PKT_END and a.range == BEYOND_PKT_END:
            return pc + 1 if eq_taken else target
        other = st.copy()
        self._find_good_pkt(other if eq_taken else st, a, False)
        self._push(pending, target, pc, other)
        return pc + 1

    @staticmethod
    def _find_good_pkt(st, p: Reg, right_open: bool) -> None:
        """Every pointer of p's type and id learns that p.off bytes (p.off + 1 when p < end) are in."""
        if p.off < 0 or (p.off == 0 and right_open):
            return
        if p.s.umax > MAX_PACKET_OFF or p.s.umax + p.off > MAX_PACKET_OFF:
            return
        new = p.off + 1 if right_open else p.off
        t, pid = p.type, p.id
        rewrite_regs(st, lambda r: r.but(range=new) if r.type is t and r.id == pid and r.range < new else None)

    def _mark_null(self, st, p: Reg, is_null: bool) -> None:
        rid = p.id

        def resolve(r: Reg) -> Reg | None:
            if r.id != rid or r.type not in OR_NULL:
                return None
            return const(0) if is_null else r.but(type=OR_NULL[r.type], id=0)
        rewrite_regs(st, resolve)
        if is_null and p.ref:
            st.refs = tuple(r for r in st.refs if r[0] != p.ref)

    # ---- calls and exits ----
    def _call_local(self, pc, ins, st) -> int:
        if len(st.frames) >= self.max_frames:
            raise err(f"the call stack of {len(st.frames) + 1} frames is too deep !", pc)
        target = pc + 1 + ins.imm
        caller = st.cur
        self.calls.setdefault(caller.subprog, set()).add(target)
        fr = new_frame(pc, target)
        for r in range(1, 6):
            fr.regs[r] = caller.regs[r]
        fr.regs[10] = Reg(FP, S.ZERO, frame=len(st.frames))
        st.frames.append(fr)
        return target

    def _exit(self, pc, st) -> int:
        r0 = st.cur.regs[0]
        if r0.type is NOT_INIT:
            raise err("R0 !read_ok", pc)
        if len(st.frames) > 1:
            if r0.type is FP and r0.frame == len(st.frames) - 1:
                raise err("cannot return stack pointer to the caller", pc)
            callee = st.frames.pop()
            caller = st.cur
            caller.regs[0] = r0
            for r in range(1, 6):
                caller.regs[r] = NOT_INIT_REG
            return callee.callsite + 1
        if r0.type is not SCALAR:
            raise err("R0 leaks addr as return value", pc)
        rr = self.ptype.ret_range
        if rr is not None and (r0.s.smin < rr[0] or r0.s.smax > rr[1]):
            raise err(f"At program exit the register R0 has {_range_text(r0.s)} should have been in "
                      f"[{rr[0]}, {rr[1]}]", pc)
        if st.refs:
            rid, apc = st.refs[0]
            raise err(f"Unreleased reference id={rid} alloc_insn={apc}", pc)
        return -1

    def _check_stack_depth(self) -> None:
        """The deepest call chain's stack (each frame rounded up to 32 bytes) within the frame limit."""
        def rounded(sub):
            return (max(self.depth.get(sub, 0), 1) + 31) // 32 * 32

        def worst(sub, seen):
            best, frames = 0, 0
            for t in self.calls.get(sub, ()):
                if t not in seen:
                    d, n = worst(t, seen | {t})
                    if d > best:
                        best, frames = d, n
            return rounded(sub) + best, frames + 1

        total, frames = worst(0, {0})
        if total > max(COMBINED_STACK, self.stack_size):
            raise VerifierError(f"combined stack size of {frames} calls is {total}. Too large", None)


_FAMILY = {"ldx": "ldx", "ldxs": "ldx", "stx": "stx", "st": "st", "ja": "ja", "ja32": "ja", "exit": "exit",
           "call": "call", "call_btf": "call", "callx": "callx", "call_local": "call_local", "ldabs": "ldabs",
           "ldind": "ldabs"}
_FLIP = {"jgt": "jlt", "jlt": "jgt", "jge": "jle", "jle": "jge"}


def _range_text(s) -> str:
    """The kernel's verbose_invalid_scalar wording of a scalar's signed range."""
    parts = ([f"smin={s.smin}"] if s.smin > S.S64MIN else []) + ([f"smax={s.smax}"] if s.smax < S.S64MAX else [])
    return " ".join(parts) or "unknown scalar value"


def _init_pkt(r: Reg) -> bool:
    """The packet's start itself (the kernel's reg_is_init_pkt_pointer)."""
    return r.type is PKT and r.id == 0 and r.off == 0 and r.s.is_const and r.s.value == 0


_OPSYM = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "or": "|=", "and": "&=", "lsh": "<<=",
          "rsh": ">>=", "mod": "%=", "xor": "^=", "arsh": "s>>=", "sdiv": "s/=", "smod": "s%="}


def _swap(op: str, s, width: int, w: int):
    if op == "neg":
        return S.alu("neg", s, S.ZERO, w)
    if s.is_const:
        v = s.value
        if op == "le":
            return S.const(v & ((1 << width) - 1))
        n = width // 8
        b = (v & ((1 << width) - 1)).to_bytes(n, "little")
        return S.const(int.from_bytes(b, "big"))
    if op == "le":
        return S.truncate(s, width // 8)
    return S.unsigned_range(0, (1 << width) - 1) if width < 64 else S.UNKNOWN


def _default_helpers():
    from ..helpers import runtime_registry
    return runtime_registry()
