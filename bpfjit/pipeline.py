"""The one load pipeline every entry goes through: Program -> validate -> resolve -> [verify] -> Prepared.

    parse (raw bytes | assembly | slots | ELF, later cBPF)  ->  Program      (program.py, asm.py, elf/)
    validate: the ISA table and the Config                     Program.validate
    resolve: program type, helpers, lddw pseudo values (maps), license/kern_version, prog_array owners
    verify: (the verifier plugs in here)
    -> Prepared: what both engines and every prog_array slot consume

`prepare()` is the only place that turns a Program into something runnable: `VM`, tail-call targets (in both
engines) and prog_array slots all call it, so a tail-call target is prepared under its caller's rules
(Config, helper registry, runtime, program type). Nothing here runs a program or emits code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, LoadError
from .program import DEFAULT_CONFIG, Config, Program
from .log import get_logger
from .progtypes import ProgType, prog_type

logger = get_logger(__name__)

M64 = (1 << 64) - 1
CALL_OPS = ("call", "call_btf", "callx")
PACKET_RUN_ABI = 5      # version of the packet-run entry point (jit/lower_pkt.py) in compiled packet programs


@dataclass(eq=False)
class Prepared:
    """A program resolved for one configuration: everything an engine needs and nothing it must look up.

    calls: ("call", id) / ("call_btf", btf_id) / ("callx", id) -> Helper, for every helper the program can
    reach (callx may reach any registered helper). lddw: pc -> the 64-bit value an lddw loads (plain
    immediates and resolved map pseudo values alike). used_maps: the maps referenced through lddw, in first
    use order (the kernel's used_maps).
    """
    program: Program
    config: Config
    helpers: object                 # helpers.HelperRegistry
    runtime: object | None          # runtime.Runtime
    ptype: ProgType
    calls: dict = field(default_factory=dict)
    lddw: dict = field(default_factory=dict)
    used_maps: list = field(default_factory=list)
    safety: str = "checked"         # what runs: "verified" (proven), "checked" or "trusted"
    proof: object | None = None     # verifier.VerifierResult of a proven program
    verifier_error: Exception | None = None     # why "auto" fell back to checked mode
    code_config: Config | None = None           # the Config native code is generated for
    writes_ctx: bool = False        # the proof lets the program store into its context (read-only runs
                                    # of such a program need runtime checks)
    is_tail_target: bool = False    # prepared for a prog_array slot (the JIT compiles its tail entry only)

    def checked_variant(self) -> "Prepared":
        """This program with runtime checks everywhere (a proven program run on read-only memory)."""
        from dataclasses import replace
        return replace(self, safety="checked", code_config=self.config.with_(safety="checked"), writes_ctx=False)

    def code_key(self) -> tuple:
        """Everything compiled code depends on apart from the engine's own options: the full decoded program,
        the program type, the helper plan and the resolved lddw values (map addresses)."""
        ptype = self.ptype.name if self.ptype.packet is None else (self.ptype.name, PACKET_RUN_ABI)
        return (tuple(self.program.insns), ptype, self.safety,
                tuple(sorted((k, h.id, h.name, h.native or "") for k, h in self.calls.items())),
                tuple(sorted(self.lddw.items())))

    def owner_key(self) -> tuple:
        """What a prog_array's programs must share with every caller (the kernel's prog_array owner)."""
        return (self.config, id(self.helpers), id(self.runtime), self.ptype.name)

    def tail_target(self, program: Program) -> "Prepared":
        """`program` prepared under this program's rules, as a tail-call target."""
        return prepare(program, self.config, self.helpers, self.runtime, tail_target=True)


def _default_helpers(runtime):
    if runtime is not None:
        return runtime.helpers
    from .helpers import default_registry
    return default_registry()


def resolve_calls(program: Program, registry) -> dict:
    """The helper each call instruction reaches; LoadError (pc, imm) for an unknown one."""
    calls = {}
    for pc, f in enumerate(program.forms):
        if f is None or f.op not in CALL_OPS:
            continue
        imm = program.insns[pc].imm
        if f.op == "call":
            h = registry.get(imm)
            if h is None:
                raise LoadError(f"call to unknown helper {imm}", pc, "imm")
            calls[("call", imm)] = h
        elif f.op == "call_btf":
            h = registry.get_btf(imm)
            if h is None:
                raise LoadError(f"call to unknown helper with BTF id {imm}", pc, "imm")
            calls[("call_btf", imm)] = h
        else:
            for h in registry:
                calls[("callx", h.id)] = h
    return calls


def resolve_lddw(program: Program, runtime) -> tuple[dict, list]:
    """(pc -> value of each lddw, maps referenced). Pseudo forms (src != 0) need a runtime."""
    out: dict = {}
    used: list = []
    insns = program.insns
    for pc, f in enumerate(program.forms):
        if f is None or not f.op.startswith("lddw"):
            continue
        ins, nxt = insns[pc], insns[pc + 1]
        if f.op == "lddw":
            out[pc] = (ins.imm & 0xFFFFFFFF) | ((nxt.imm & 0xFFFFFFFF) << 32)
            continue
        if runtime is None:
            raise LoadError(f"lddw with src {ins.src} ({f.op[5:]}) needs a runtime that resolves it", pc, "src")
        value, m = runtime.resolve_lddw_map(program, pc, ins.src, ins.imm, nxt.imm)
        out[pc] = value & M64
        if m is not None and all(m is not u for u in used):
            used.append(m)
    return out, used


def prepare(program: Program, config: Config | None = None, helpers=None, runtime=None, *,
            tail_target: bool = False) -> Prepared:
    """Validate and resolve `program` for `config` (default: the runtime's, else DEFAULT_CONFIG).
    tail_target: prepared as a prog_array slot's program (it shares its caller's instruction meter)."""
    if not isinstance(program, Program):
        raise ConfigError(f"must be a bpfjit.Program; got {type(program).__name__}", "program")
    if config is None:
        config = runtime.config if runtime is not None else DEFAULT_CONFIG
    if not isinstance(config, Config):
        raise ConfigError(f"must be a bpfjit.Config; got {type(config).__name__}", "config")
    program.validate(config)
    ptype = prog_type(program.prog_type)
    registry = helpers if helpers is not None else _default_helpers(runtime)
    if runtime is not None:
        runtime.check_program(program, registry)
    p = Prepared(program, config, registry, runtime, ptype, is_tail_target=tail_target)
    p.calls = resolve_calls(program, registry)
    p.lddw, p.used_maps = resolve_lddw(program, runtime)
    ctx_pass = None
    if ptype.packet is not None:              # packet programs: context accesses checked and rewritten
        from .ctxrewrite import rewrite
        ctx_pass = rewrite(program, ptype)
    _verify(p, tail_target)
    if ctx_pass is not None:                  # the verifier saw the original; both engines run this
        p.program = ctx_pass.program
        if ctx_pass.ambiguous and p.safety == "verified":
            p.safety, p.proof, p.code_config = "checked", None, config
    for m in p.used_maps:
        bind = getattr(m, "bind_owner", None)
        if bind is not None:
            bind(p)
    return p


def _verify(p: Prepared, tail_target: bool = False) -> None:
    """The verify step: sets p.safety, p.proof / p.verifier_error and p.code_config per Config.safety.

    Proven code runs without the meter. A tail-call chain shares one meter across programs whose slots change
    at run time, so with an instruction limit set, programs that tail-call and tail-call targets keep it
    (they run checked) — the proof of one program does not bound the chain."""
    from .errors import VerifierError
    config = p.config
    p.code_config = config
    if config.safety in ("checked", "trusted"):
        p.safety = config.safety
        return
    from .verifier import verify
    try:
        proof = verify(p.program, runtime=p.runtime, helpers=p.helpers, config=config, mem_size=config.mem_size)
        limit = config.insn_limit
        if limit is not None and (tail_target or any(h.name == "tail_call" for h in p.calls.values())):
            raise VerifierError(f"tail calls share the instruction meter (Config.insn_limit={limit}) across "
                                "programs: the meter stays", None)
        if limit is not None and proof.insn_processed > limit:
            raise VerifierError(f"a path may run {proof.insn_processed} instructions, more than "
                                f"Config.insn_limit={limit}: the meter stays", None)
    except VerifierError as e:
        if config.safety == "verified":
            raise
        logger.debug("program %r runs checked: %s", p.program.name, e)
        p.safety, p.verifier_error = "checked", e
        return
    except Exception as e:  # noqa: BLE001 - a verifier bug must not stop a program that checked mode runs
        if config.safety == "verified":
            raise VerifierError(f"the verifier failed: {type(e).__name__}: {e}", None) from e
        logger.warning("verifier failed on %r (%s: %s); running it in checked mode", p.program.name,
                       type(e).__name__, e)
        p.safety, p.verifier_error = "checked", e
        return
    p.safety, p.proof = "verified", proof
    p.code_config = config.with_(safety="trusted", insn_limit=None)
    forms = p.program.forms
    # a raw program's mem is "mem" to the verifier (as is ringbuf memory: conservative); other types' context
    # rules (read-only kprobe pt_regs ...) are the verifier's own
    p.writes_ctx = p.ptype.name == "raw" and any(
        "mem" in kinds for pc, kinds in (proof.access_types or {}).items()
        if forms[pc] is not None and (forms[pc].op in ("st", "stx") or forms[pc].op.startswith("lock_")))
