"""`Program` (decoded, validated bytecode plus metadata) and `Config` (every engine toggle in one object).

Load-time validation lives here: every slot is matched against the ISA table, reserved fields must be
zero, registers in range, no writes to r10, jump and call targets inside the program and never into the
second half of an lddw, the CPU version and conformance groups enabled. Errors are `LoadError` naming the
instruction index and the field. Running a program is not done here (see vm.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import isa
from .asm import assemble_insns, disassemble
from .errors import ConfigError, LoadError
from .isa import Form, Insn


SAFETY_MODES = ("auto", "verified", "checked", "trusted")


@dataclass(frozen=True)
class Config:
    """Engine options, shared by the interpreter and the JIT. Every field is checked at construction
    (ConfigError naming the field).

    safety: "auto" (default: verify; a proven program runs as proven-safe native code without runtime checks
    or meter, a refused one runs checked and `VM.verifier_error` says why), "verified" (refuse what the
    verifier does not prove: VerifierError), "checked" (runtime checks everywhere, no verification),
    "trusted" (no checks, no proof). `checked=True/False` is the older spelling of "checked"/"trusted".
    mem_size: raw programs' memory has at least this many bytes (the verifier relies on it; every run checks
    it before the program starts). allow_loops: the verifier accepts bounded loops (default) or refuses
    back-edges as older kernels did.
    """
    cpu: int = 4                                  # CPU version v1..v4 accepted at load
    groups: frozenset = isa.ALL_GROUPS            # conformance groups accepted at load
    insn_limit: int | None = 10_000_000           # instructions per run before RuntimeFault("insn_limit")
    max_call_depth: int = 8                       # frames (the entry frame counts)
    stack_size: int = 512                         # bytes per frame
    checked: bool | None = None                   # alias: True = safety "checked", False = "trusted"
    opt_level: int = 2                            # JIT: LLVM optimisation level 0..3
    tail_call_limit: int = 32                     # chained tail calls per run
    safety: str = "auto"                          # see above
    mem_size: int | None = None                   # raw programs: minimum mem length (verifier, run check)
    allow_loops: bool = True                      # verifier: bounded loops allowed

    def __post_init__(self):
        for name, rule in _CONFIG_RULES.items():
            value = getattr(self, name)
            problem = rule(value)
            if problem:
                raise ConfigError(f"{problem}; got {value!r}", name)
        # `checked` is derived from `safety` (True unless trusted); checked=False alone means "trusted"
        safety, checked = self.safety, self.checked
        if checked is False and safety == "auto":
            object.__setattr__(self, "safety", "trusted")
        elif checked is not None and checked != (safety != "trusted"):
            raise ConfigError(f"checked={checked} contradicts safety={safety!r} (use one of them)", "checked")
        object.__setattr__(self, "checked", self.safety != "trusted")

    def with_(self, **kw) -> "Config":
        if "safety" in kw and "checked" not in kw:
            kw["checked"] = None
        elif "checked" in kw and "safety" not in kw:
            kw["safety"] = "auto" if kw["checked"] is not False else "trusted"
        return replace(self, **kw)


def _int_in(lo: int, hi: int, none_ok: bool = False):
    def rule(v):
        if v is None and none_ok:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an int{' or None' if none_ok else ''}"
        return None if lo <= v <= hi else f"must be in {lo}..{hi}"
    return rule


def _stack_rule(v):
    problem = _int_in(8, 1 << 20)(v)
    return problem or (None if v % 8 == 0 else "must be a multiple of 8")


def _groups_rule(v):
    if not isinstance(v, frozenset):
        return "must be a frozenset of conformance group names"
    unknown = v - isa.ALL_GROUPS
    return f"unknown groups {sorted(unknown)}; known: {sorted(isa.ALL_GROUPS)}" if unknown else None


_CONFIG_RULES = {
    "cpu": _int_in(1, 4),
    "groups": _groups_rule,
    "insn_limit": _int_in(1, (1 << 63) - 1, none_ok=True),
    "max_call_depth": _int_in(1, 8),
    "stack_size": _stack_rule,
    "checked": lambda v: None if v is None or isinstance(v, bool) else "must be True, False or None",
    "opt_level": _int_in(0, 3),
    "tail_call_limit": _int_in(0, 32),
    "safety": lambda v: None if v in SAFETY_MODES else f"must be one of {', '.join(SAFETY_MODES)}",
    "mem_size": _int_in(0, 1 << 40, none_ok=True),
    "allow_loops": lambda v: None if isinstance(v, bool) else "must be True or False",
}


DEFAULT_CONFIG = Config()

TERMINATORS = ("exit", "ja", "ja32")


@dataclass
class Program:
    """A validated BPF program: instruction slots plus metadata used by the runtime."""
    insns: list[Insn]
    name: str = "prog"
    license: str = ""
    kern_version: int = 0
    prog_type: str = "raw"          # "raw" (r1=mem, r2=len) or "kprobe" (r1=pt_regs)
    maps: list = field(default_factory=list)      # maps referenced by lddw src 5/6 (by index)
    source: str | None = None       # assembly text, when assembled

    def __post_init__(self):
        self.insns = list(self.insns)
        self._forms: list[Form | None] | None = None
        self.cbpf: list | None = None           # classic BPF programs: the original instructions (cbpf.load)

    # ---- constructors ----
    @classmethod
    def from_bytes(cls, data: bytes, config: Config = DEFAULT_CONFIG, **meta) -> "Program":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigError(f"must be bytes (raw little-endian bytecode); got {type(data).__name__}", "data")
        data = bytes(data)
        prog = cls(isa.decode(data), **meta)
        prog.validate(config)
        return prog

    @classmethod
    def from_insns(cls, insns, config: Config = DEFAULT_CONFIG, **meta) -> "Program":
        """From slots: Insn tuples or (opcode, dst, src, off, imm) sequences, each field in its encoding's
        range (LoadError naming the slot and field otherwise)."""
        slots = []
        if isinstance(insns, (str, bytes)) or not hasattr(insns, "__iter__"):
            raise ConfigError(f"must be a sequence of slots (opcode, dst, src, off, imm); got "
                              f"{type(insns).__name__}", "insns")
        for pc, i in enumerate(insns):
            try:
                slots.append(Insn(*i))
            except (TypeError, ValueError) as e:
                raise LoadError(f"a slot is (opcode, dst, src, off, imm); got {i!r} ({e})", pc) from None
        prog = cls(slots, **meta)
        prog.validate(config)
        return prog

    @classmethod
    def from_asm(cls, text: str, config: Config = DEFAULT_CONFIG, *, helpers=None, **meta) -> "Program":
        if not isinstance(text, str):
            raise ConfigError(f"must be assembly text (str); got {type(text).__name__}", "text")
        prog = cls(assemble_insns(text, helpers=helpers), source=text, **meta)
        prog.validate(config)
        return prog

    # ---- views ----
    def to_bytes(self) -> bytes:
        return isa.encode(self.insns)

    def __len__(self) -> int:
        return len(self.insns)

    def __eq__(self, other) -> bool:
        return isinstance(other, Program) and self.insns == other.insns

    @property
    def forms(self) -> list[Form | None]:
        """Form of each slot (None for lddw second halves)."""
        if self._forms is None:
            self.validate(DEFAULT_CONFIG)
        assert self._forms is not None
        return self._forms

    def disassemble(self) -> str:
        return disassemble(self)

    # ---- validation ----
    def validate(self, config: Config = DEFAULT_CONFIG) -> None:
        from .progtypes import prog_type
        prog_type(self.prog_type)                 # an unknown type is refused here, before anything runs
        insns = self.insns
        n = len(insns)
        if n == 0:
            raise LoadError("empty program")
        if n > isa.MAX_INSNS:
            raise LoadError(f"program has {n} instructions, more than the limit of {isa.MAX_INSNS}")
        forms: list[Form | None] = [None] * n
        second: set[int] = set()
        pc = 0
        while pc < n:
            ins = insns[pc]
            f: Form | None = _check_slot(pc, ins, config)
            forms[pc] = f
            if ins.opcode == isa.LDDW_OPCODE:
                if pc + 1 >= n:
                    raise LoadError("lddw is truncated: its second slot is missing", pc)
                nxt = insns[pc + 1]
                for fld in ("opcode", "dst", "src", "off"):
                    if getattr(nxt, fld):
                        raise LoadError(f"second slot of lddw must have {fld} 0, has {getattr(nxt, fld):#x}",
                                        pc + 1, fld)
                second.add(pc + 1)
                pc += 2
            else:
                pc += 1
        for pc, f in enumerate(forms):
            if f is None:
                continue
            target = jump_target(pc, insns[pc], f)
            if target is not None:
                fld = "off" if f.op in isa.COND_JUMPS or f.op == "ja" else "imm"
                if not 0 <= target < n:
                    raise LoadError(f"{f.mnemonic} target {target} is outside the program (0..{n - 1})", pc, fld)
                if target in second:
                    raise LoadError(f"{f.mnemonic} target {target} is the second half of an lddw", pc, fld)
        last = forms[n - 1]
        if last is None or last.op not in TERMINATORS:
            raise LoadError("the last instruction must be exit or ja", n - 1)
        self._forms = forms


_REG_FIELDS = ("dst", "src")


# what an 8-byte slot can hold: every field must fit its encoding, or the program would not be what it says
FIELD_RANGES = {"opcode": (0, 0xFF), "dst": (0, 0xF), "src": (0, 0xF), "off": (-(1 << 15), (1 << 15) - 1),
                "imm": (-(1 << 31), (1 << 31) - 1)}


def _check_fields(pc: int, ins) -> None:
    for fld, (lo, hi) in FIELD_RANGES.items():
        val = getattr(ins, fld)
        if isinstance(val, bool) or not isinstance(val, int):
            raise LoadError(f"field {fld} must be an int, is {type(val).__name__}", pc, fld)
        if not lo <= val <= hi:
            raise LoadError(f"field {fld} is {val}, outside its encoding ({lo}..{hi}; off is s16, imm s32)",
                            pc, fld)


def _check_slot(pc: int, ins: Insn, config: Config) -> Form:
    _check_fields(pc, ins)
    f = isa.form_of(ins)
    if f is None:
        cands = isa.BY_OPCODE.get(ins.opcode)
        if not cands:
            raise LoadError(f"unknown opcode {ins.opcode:#04x}", pc, "opcode")
        sel = cands[0].sel_field or "imm"
        val = getattr(ins, sel)
        if cands[0].op in ("le", "be", "bswap"):
            raise LoadError(f"byte swap width must be 16, 32 or 64, not {val}", pc, "imm")
        raise LoadError(f"opcode {ins.opcode:#04x} ({cands[0].mnemonic}) has invalid {sel} {val:#x}", pc, sel)
    for fld in ("dst", "src", "off", "imm"):
        rule = getattr(f, fld)
        val = getattr(ins, fld)
        if rule == "zero" and val != 0:
            raise LoadError(f"{f.mnemonic}: reserved field {fld} must be 0, is {val:#x}", pc, fld)
        if rule in ("reg", "wreg") and val > isa.MAX_REG:
            raise LoadError(f"{f.mnemonic}: invalid register r{val} in {fld}", pc, fld)
        if rule == "wreg" and val == 10:
            raise LoadError(f"{f.mnemonic}: r10 is read-only", pc, fld)
    # registers outside 0..10 in fields the form does not use are already rejected as non-zero above
    if f.op.startswith("lock_") and (f.op.startswith("lock_fetch") or f.op == "lock_xchg") and ins.src == 10:
        raise LoadError(f"{f.mnemonic}: r10 is read-only (fetch writes the source register)", pc, "src")
    if f.cpu > config.cpu:
        raise LoadError(f"{f.mnemonic} needs CPU v{f.cpu}, configured v{config.cpu}", pc, "opcode")
    if f.group not in config.groups:
        raise LoadError(f"{f.mnemonic} is in group {f.group}, which is not enabled", pc, "opcode")
    return f


def jump_target(pc: int, ins: Insn, f: Form) -> int | None:
    """Target slot of a jump/local call, None for other instructions."""
    if f.op in isa.COND_JUMPS or f.op == "ja":
        return pc + 1 + ins.off
    if f.op in ("ja32", "call_local"):
        return pc + 1 + ins.imm
    return None


def meter_points(prog: Program) -> set[int]:
    """Leaders where the instruction meter compares against the limit: the entry, every local-call target
    and every target of a backward jump (every cycle passes through one). Other blocks only add their cost,
    so a run can pass the limit by at most one acyclic stretch before it faults."""
    points = {0}
    for pc, f in enumerate(prog.forms):
        if f is None:
            continue
        t = jump_target(pc, prog.insns[pc], f)
        if t is not None and (f.op == "call_local" or t <= pc):
            points.add(t)
    return points


def block_costs(prog: Program) -> dict[int, int]:
    """leader -> number of instructions in its basic block (an lddw counts once)."""
    lead = leaders(prog)
    bounds = lead + [len(prog.insns)]
    forms = prog.forms
    return {s: sum(1 for p in range(s, bounds[i + 1]) if forms[p] is not None) for i, s in enumerate(lead)}


def leaders(prog: Program) -> list[int]:
    """Start slots of basic blocks: 0, every jump/call target, every slot after a jump, call or exit.

    The instruction meter of both engines charges a whole block on entry, so blocks are defined once here.
    """
    forms = prog.forms
    n = len(prog.insns)
    lead = {0}
    for pc, f in enumerate(forms):
        if f is None:
            continue
        t = jump_target(pc, prog.insns[pc], f)
        if t is not None:
            lead.add(t)
        if f.op in isa.COND_JUMPS or f.op in ("ja", "ja32", "exit", "call_local", "callx", "call"):
            nxt = pc + (2 if f.op.startswith("lddw") else 1)
            if nxt < n:
                lead.add(nxt)
    return sorted(lead)


def assemble(text: str, *, helpers=None, maps=None, config: Config | None = None, **meta) -> Program:
    """Assemble and validate: `Program.from_asm` with helper and map names (asm.assemble_insns). `meta`
    goes to Program (name, license, kern_version, prog_type ...)."""
    insns = assemble_insns(text, helpers=helpers, maps=maps)
    return Program.from_insns(insns, config or DEFAULT_CONFIG, source=text, **meta)
