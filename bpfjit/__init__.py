"""bpfjit: run eBPF programs in user space, in a reference interpreter or natively through LLVM.

Public API: `Program` (load from bytes/asm/ELF), `Config`, `VM` (program + engine), `run` (one-shot),
`assemble`/`disassemble`, the exception hierarchy, and the helper registry.
"""
from .errors import AssemblerError, BPFError, ConfigError, ELFError, LoadError, RuntimeFault, VerifierError
from .program import Config, Program
from .vm import ENGINES, VM, run
from .errors import PcapError  # noqa: E402  (packets: classic BPF and pcap files)
from . import cbpf, pcap  # noqa: E402

__version__ = "0.1.0"


def assemble(text: str, **kw) -> Program:
    from .asm import assemble as _assemble
    return _assemble(text, **kw)


def disassemble(prog) -> str:
    from .asm import disassemble as _disassemble
    return _disassemble(prog)


__all__ = ["AssemblerError", "BPFError", "ConfigError", "ELFError", "LoadError", "RuntimeFault", "VerifierError", "Config", "Program",
           "ENGINES", "VM", "run", "assemble", "disassemble", "__version__", "PcapError", "cbpf", "pcap"]
