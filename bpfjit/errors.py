"""The exception hierarchy of bpfjit.

Everything bpfjit raises on bad input or a faulting program derives from `BPFError`.
Messages always say *where*: an instruction index (pc) or a source line.
Nothing else lives here.
"""
from __future__ import annotations

from typing import Callable, NamedTuple


class BPFError(Exception):
    """Base class of every error bpfjit raises on purpose."""


class AssemblerError(BPFError):
    """Assembly text that cannot be assembled. Carries the 1-based line number and the line text."""

    def __init__(self, message: str, line_no: int | None = None, line: str | None = None):
        self.reason = message
        self.line_no = line_no
        self.line = line
        where = f"line {line_no}: " if line_no is not None else ""
        text = f" ({line.strip()!r})" if line else ""
        super().__init__(f"{where}{message}{text}")


class LoadError(BPFError):
    """A program that cannot be loaded: bad encoding, bad jump, unknown helper, bad ELF ..."""

    def __init__(self, message: str, pc: int | None = None, field: str | None = None):
        self.reason = message
        self.pc = pc
        self.field = field
        where = f"instruction {pc}: " if pc is not None else ""
        super().__init__(f"{where}{message}")


class VerifierError(LoadError):
    """A program the verifier rejects; `log` (the verifier's log) and `insn_processed` are set by verify()."""
    log: str = ""
    insn_processed: int = 0


class ELFError(BPFError):
    """An ELF object that cannot be parsed or loaded. Carries the section name and the offset in it."""

    def __init__(self, message: str, section: str | None = None, offset: int | None = None):
        self.reason = message
        self.section = section
        self.offset = offset
        where = ""
        if section is not None:
            where = f"section {section}" + (f" offset {offset:#x}" if offset is not None else "") + ": "
        elif offset is not None:
            where = f"offset {offset:#x}: "
        super().__init__(f"{where}{message}")


class ConfigError(BPFError, ValueError):
    """A configuration value (Config field, VM/run argument) of the wrong type or out of range."""

    def __init__(self, message: str, field: str | None = None):
        self.reason = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class RuntimeFault(BPFError):
    """A program that faulted while running (in either engine, with the same kind, pc and text).

    kind is one of FAULT_KINDS; addr/size describe the memory access for memory faults (addr is a host
    address, shown only as a detail). region/offset say where the access went in terms of the run
    (`faultinfo.describe_access`): region "mem", "record", "ctx", "stack", "map:NAME", "null" or None (no
    region near), offset inside it (the stack counts from its top, r10 of the entry frame, so it is
    negative). record is the index of the faulting record of a batch run (run_batch, Filter, fire_batch),
    else None; the message names it.
    """

    def __init__(self, kind: str, pc: int, message: str = "", addr: int | None = None,
                 size: int | None = None, region: str | None = None, offset: int | None = None):
        if kind not in FAULT_KINDS or kind == "none":
            raise ConfigError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS[1:])}", "kind")
        self.kind = kind
        self.pc = pc
        self.addr = addr
        self.size = size
        self.message = message
        self.region = region
        self.offset = offset
        self._record: int | None = None
        super().__init__(self._text())

    @property
    def record(self) -> int | None:
        return self._record

    @record.setter
    def record(self, index: int | None) -> None:
        """Set by the batch loops after the fault is raised; the message then names the record."""
        self._record = index
        self.args = (self._text(),)

    def _text(self) -> str:
        detail = self.message or self.kind
        if self.addr is not None:
            detail += f"; host address {self.addr:#x}" + (f" size {self.size}" if self.size is not None else "")
        where = f"record {self._record}: " if self._record is not None else ""
        return f"{where}instruction {self.pc}: {detail}"

    def __reduce__(self) -> tuple:
        """Faults travel between processes (dask workers) with every attribute."""
        return (type(self), (self.kind, self.pc, self.message, self.addr, self.size, self.region, self.offset),
                {"record": self.record})

    def key(self) -> tuple:
        """What must be identical between engines."""
        return (self.kind, self.pc, self.addr, self.size)


# Fault kinds, shared by both engines (the JIT reports them by index into this tuple).
FAULT_KINDS = (
    "none",
    "load",          # load outside the readable regions
    "store",         # store outside the writable regions
    "atomic",        # atomic access outside the writable regions
    "insn_limit",    # instruction limit exceeded
    "call_depth",    # more than MAX_CALL_DEPTH nested local calls
    "bad_call",      # callx to an unknown helper
    "helper",        # a helper failed (Python exception in a helper)
    "mem_size",      # the run's memory is shorter than Config.mem_size (raised before the program starts)
    "timeout",       # the run took longer than its timeout (VM.run(..., timeout=seconds))
)
FAULT_CODE = {k: i for i, k in enumerate(FAULT_KINDS)}

# The message of each kind, shared by both engines (a fault's text is part of what they agree on).
FAULT_MESSAGES = {
    "load": "load outside accessible memory",
    "store": "store outside writable memory",
    "atomic": "atomic access outside writable memory",
    "insn_limit": "instruction limit exceeded",
    "call_depth": "too many nested call frames",
    "bad_call": "callx to an unknown helper",
    "helper": "helper failed",
    "mem_size": "memory shorter than Config.mem_size",
    "timeout": "run stopped: timeout",
}


# The limits a run can reach: fault kind -> (Config field, message template filled with the limit).
LIMITS = {
    "insn_limit": ("insn_limit", "instruction limit of {} reached"),
    "call_depth": ("max_call_depth", "call depth limit of {} frames reached"),
}


def fault(kind: str, pc: int, addr: int | None = None, size: int | None = None) -> RuntimeFault:
    """The RuntimeFault of `kind` at `pc`, with the shared message."""
    return RuntimeFault(kind, pc, FAULT_MESSAGES[kind], addr, size)


def limit_fault(kind: str, pc: int, limit: int) -> RuntimeFault:
    """The RuntimeFault of a limit (LIMITS) reached at `pc`: its value and the Config field that sets it,
    e.g. "instruction limit of 1000000 reached (Config.insn_limit)"."""
    field, template = LIMITS[kind]
    return RuntimeFault(kind, pc, f"{template.format(limit)} (Config.{field})")


def memory_fault(kind: str, pc: int, addr: int, size: int, where: "Where | None") -> RuntimeFault:
    """The RuntimeFault of a load/store/atomic access at host address `addr` that no region allows, in
    the words of `where` (faultinfo.describe_access over the run's regions; None: the generic message)."""
    if where is None:
        return fault(kind, pc, addr, size)
    return RuntimeFault(kind, pc, where.text, addr, size, where.region, where.offset)


Locate = Callable[[str, int, int], "Where"]


def helper_fault(e: BaseException, pc: int, locate: Locate | None = None) -> RuntimeFault:
    """The RuntimeFault both engines raise when a helper called at `pc` fails with `e`; a memory fault
    of the helper is described again by `locate` (the run's regions) so both engines word it alike."""
    if isinstance(e, RuntimeFault):
        if locate is not None and e.kind in MEMORY_KINDS and e.addr is not None:
            return memory_fault(e.kind, pc, e.addr, e.size or 0, locate(e.kind, e.addr, e.size or 0))
        return RuntimeFault(e.kind, pc, e.message, e.addr, e.size, e.region, e.offset)
    return RuntimeFault("helper", pc, f"helper raised {type(e).__name__}: {e}")


MEMORY_KINDS = ("load", "store", "atomic")


class Where(NamedTuple):
    """Where a memory access went (faultinfo.describe_access): `.region`/`.offset` of the fault and the
    text of its message."""
    region: str | None
    offset: int | None
    text: str


class PcapError(BPFError):
    """A pcap / pcapng file that cannot be read or packets that cannot be written. Carries the byte offset
    of the problem in the file (None when it is not about a position) and the path."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        self.reason = message
        self.offset = offset
        self.path = path
        where = f"{path}: " if path else ""
        if offset is not None:
            where += f"offset {offset:#x}: "
        super().__init__(f"{where}{message}")
