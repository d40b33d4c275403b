"""bpfjit.verifier: a static verifier in the style of the Linux kernel's (abstract interpretation of every
path with tnums and signed/unsigned ranges, typed pointers, per-byte stack state, helper prototypes,
state pruning, an instruction budget, bpf-to-bpf frames, the kernel's messages and log format).

    from bpfjit.verifier import verify
    res = verify(program, runtime=rt, mem_size=64, log_level=2)   # VerifierResult, or VerifierError

Modules: tnum.py (tristate numbers), scalar.py (ranges and their transfer functions), regs.py (register
types), state.py (frames, stack, pruning comparisons), cfg.py (control-flow checks, liveness), access.py
(memory rules), helpers.py (helper calls), core.py (the exploration), disasm.py (log syntax).
docs/verifier.md says what is checked and what is not.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass

from ..errors import VerifierError
from .core import INSN_LIMIT, Verifier

__all__ = ["verify", "VerifierResult", "VerifierError", "INSN_LIMIT"]


@dataclass(frozen=True)
class VerifierResult:
    """What a successful verification proved and cost. `proven`: every path is proven (memory accesses
    in bounds, termination, helper arguments); what the JIT may rely on."""
    insn_processed: int
    total_states: int
    max_states_per_insn: int
    log: str
    proven: bool = True
    mem_size: int | None = None
    stack_depth: tuple = ()         # ((subprogram start pc, deepest stack byte used), ...)
    access_types: dict | None = None  # pc -> frozenset of pointer types ("fp", "mem", "map_value", "ctx", "pkt"...)
                                    # its load/store/atomic was proven in bounds for


def verify(program, *, runtime=None, helpers=None, config=None, mem_size: int | None = None,
           log_level: int = 0, allow_loops: bool | None = None, prog_type=None,
           insn_limit: int = INSN_LIMIT) -> VerifierResult:
    """Verify `program`; raise VerifierError(message, pc) with `.log` when it cannot be proven safe.

    runtime: resolves lddw map references (and gives the helper registry and kern_version);
    helpers: the HelperRegistry (default: the runtime's, else the built-in and map helpers);
    config: a Config (stack_size, max_call_depth; `allow_loops` when it has one, default True);
    mem_size: raw programs: r1 points to at least this many bytes and r2 >= it;
    log_level: 0 none, 1 the failing path, 2 every instruction with its register state;
    allow_loops, prog_type: override the config's / the program's (prog_type: a name or a ProgType row, whose
    `fields` give the context rules); insn_limit: the processed-instruction
    budget (the kernel's 1,000,000).
    """
    if allow_loops is None:
        allow_loops = getattr(config, "allow_loops", True)
    if mem_size is not None and (not isinstance(mem_size, int) or mem_size < 0):
        from ..errors import ConfigError
        raise ConfigError(f"must be a non-negative int, not {mem_size!r}", "mem_size")
    v = Verifier(program, runtime=runtime, helpers=helpers, config=config, mem_size=mem_size,
                 log_level=log_level, allow_loops=allow_loops, prog_type=prog_type, insn_limit=insn_limit)
    gc_was_on = gc.isenabled()
    gc.disable()          # the states form no cycles; collecting while they pile up costs more than all else
    try:
        v.run()
    except VerifierError as e:
        if e.reason not in v.log[-1:]:
            v.log.append(e.reason)
        e.log = "\n".join(v.log) + "\n"
        e.insn_processed = v.processed
        raise
    finally:
        if gc_was_on:
            gc.enable()
    summary = (f"processed {v.processed} insns (limit {insn_limit}) max_states_per_insn {v.max_states} "
               f"total_states {v.total_states}")
    if log_level:
        v.log.append(summary)
    depths = tuple(sorted(v.depth.items()))
    access = {pc: frozenset(t) for pc, t in sorted(v.access_types.items())}
    return VerifierResult(v.processed, v.total_states, v.max_states, "\n".join(v.log) + ("\n" if v.log else ""),
                          True, mem_size, depths, access)
