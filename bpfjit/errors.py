"""The exception hierarchy of bpfjit.

Everything bpfjit raises on bad input or a faulting program derives from `BPFError`.
Messages always say *where*: an instruction index (pc) or a source line.
Nothing else lives here.
"""
from __future__ import annotations


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
    """A program the verifier rejects."""


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
    """A program that faulted while running (in either engine, with the same kind and pc).

    kind is one of FAULT_KINDS; addr/size describe the memory access for memory faults.
    """

    def __init__(self, kind: str, pc: int, message: str = "", addr: int | None = None,
                 size: int | None = None):
        if kind not in FAULT_KINDS or kind == "none":
            raise ConfigError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS[1:])}", "kind")
        self.kind = kind
        self.pc = pc
        self.addr = addr
        self.size = size
        self.message = message
        detail = message or kind
        if addr is not None:
            detail += f" at address {addr:#x}" + (f" size {size}" if size is not None else "")
        super().__init__(f"instruction {pc}: {detail}")

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


def fault(kind: str, pc: int, addr: int | None = None, size: int | None = None) -> RuntimeFault:
    """The RuntimeFault of `kind` at `pc`, with the shared message."""
    return RuntimeFault(kind, pc, FAULT_MESSAGES[kind], addr, size)


def helper_fault(e: BaseException, pc: int) -> RuntimeFault:
    """The RuntimeFault both engines raise when a helper called at `pc` fails with `e`."""
    if isinstance(e, RuntimeFault):
        return RuntimeFault(e.kind, pc, e.message, e.addr, e.size)
    return RuntimeFault("helper", pc, f"helper raised {type(e).__name__}: {e}")


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
