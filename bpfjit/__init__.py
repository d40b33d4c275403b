"""bpfjit: run eBPF programs in user space, in a reference interpreter or natively through LLVM.

Everything a user needs is importable from `bpfjit` itself (`from bpfjit import Program, VM, Runtime`):

Programs and engines
    Program          a validated program: Program.from_asm(text, helpers=...) / from_bytes / from_insns
    Config           every engine toggle in one object (cpu, insn_limit, checked, opt_level ...)
    VM               a program bound to an engine ("interp" or "jit"): run / run_batch / bench
    ENGINES          the engine names
    run              one-shot: run(program_or_text, mem, engine)
    assemble         assembly text -> Program (helpers=registry for `call NAME`, maps=... for `map(NAME)`)
    disassemble      Program or slots -> assembly text (helpers=registry prints `call NAME`)
    ObjectFile       clang-built BPF ELF objects: ObjectFile.open(path).load() (docs/elf.md)
    verify           the static verifier: verify(program, mem_size=...) -> VerifierResult (docs/verifier.md)
    Filter           one program over many records: mask / apply / r0, all cores (docs/filtering.md)

Runtime, helpers and program types
    Runtime          maps by name/fd, kernel helpers, tail calls, kprobe runs, trace buffer, events
    HelperRegistry   id -> Helper table; Helper (one helper); HelperContext (what a Python helper sees)
    default_registry the process-wide registry of built-in helpers
    pt_regs, pt_regs_array   kprobe contexts (one record / a batch); PT_REGS their numpy dtype

Maps
    ArrayMap, PercpuArrayMap, HashMap, PercpuHashMap, LruHashMap, LruPercpuHashMap, ProgArrayMap,
    RingBufMap, PerfEventArrayMap, QueueMap, StackMap, LpmTrieMap, DevMap, DevMapHash, CpuMap, XskMap,
    ArrayOfMapsMap, HashOfMapsMap (map-in-map),
    MapBase (their base class), create_map(type, ...),
    BPF_ANY, BPF_NOEXIST, BPF_EXIST (update flags)

Errors (all derive from BPFError)
    BPFError, AssemblerError (line), LoadError (pc, field), VerifierError, ELFError (section, offset),
    ConfigError (field), RuntimeFault (kind, pc, addr, size), MapError (errno), DataFileError (line),
    PcapError (offset)

Packets
    cbpf             classic BPF: cbpf.from_tcpdump(text), cbpf.load(insns), cbpf.compile(expr) (libpcap)
    pcap             pcap/pcapng files: pcap.read(path) -> Packets, pcap.write(path, ...)

Logging: the library logs to `logging.getLogger("bpfjit")` (a NullHandler by default) and never prints.
The runtime, maps and program types are imported on first use (they pull in the helper libraries).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .log import LOGGER_NAME as _LOGGER_NAME  # noqa: F401  (importing log installs the NullHandler)
from .errors import (AssemblerError, BPFError, ConfigError, ELFError, LoadError, PcapError, RuntimeFault,
                     VerifierError)
from .helpers.registry import Helper, HelperContext, HelperRegistry
from .program import Config, Program
from .vm import ENGINES, VM, run


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("bpfjit")
    except PackageNotFoundError:     # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

if TYPE_CHECKING:
    from .datafile import DataFileError
    from .filter import Filter
    from .maps import (BPF_ANY, BPF_EXIST, BPF_NOEXIST, ArrayMap, HashMap, LruHashMap, LruPercpuHashMap,
                       MapBase, MapError, PercpuArrayMap, PercpuHashMap, PerfEventArrayMap, ProgArrayMap,
                       QueueMap, RingBufMap, StackMap, create_map)
    from .progtypes import PT_REGS, pt_regs, pt_regs_array
    from .runtime import Runtime
    from .elf import ObjectFile
    from .verifier import VerifierResult, verify


def assemble(text: str, *, helpers: Any = None, maps: Any = None, config: Config | None = None,
             **meta: Any) -> Program:
    """Assemble and validate `text` (docs/assembly.md). `helpers`: a HelperRegistry (or name -> id mapping)
    whose names `call NAME` may use; `maps`: the names `map(NAME)` may use; `meta` goes to Program."""
    from .program import assemble as _assemble
    return _assemble(text, helpers=helpers, maps=maps, config=config, **meta)


def disassemble(prog: Any, *, helpers: Any = None) -> str:
    """A Program (or list of slots) as assembly; with `helpers`, calls print the registered names."""
    from .asm import disassemble as _disassemble
    return _disassemble(prog, helpers=helpers)


# name -> submodule it is imported from on first use (PEP 562)
_LAZY = {
    "Runtime": "runtime",
    "default_registry": "helpers.defaults",
    "pt_regs": "progtypes", "pt_regs_array": "progtypes", "PT_REGS": "progtypes",
    "DataFileError": "datafile",
    "ObjectFile": "elf",
    "verify": "verifier", "VerifierResult": "verifier",
    "Filter": "filter",
    **{name: "maps" for name in (
        "ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap", "LruPercpuHashMap",
        "ProgArrayMap", "RingBufMap", "PerfEventArrayMap", "QueueMap", "StackMap", "LpmTrieMap", "MapBase", "MapError",
        "create_map", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "DevMap", "DevMapHash", "CpuMap", "XskMap",
        "ArrayOfMapsMap", "HashOfMapsMap")},
}


_SUBMODULES = ("cbpf", "pcap")         # bpfjit.cbpf, bpfjit.pcap without importing them first


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bpfjit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    "Program", "Config", "VM", "ENGINES", "run", "assemble", "disassemble", "ObjectFile", "verify",
    "VerifierResult",
    "Runtime", "HelperRegistry", "Helper", "HelperContext", "default_registry", "pt_regs", "pt_regs_array",
    "PT_REGS",
    "ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap", "LruPercpuHashMap", "ProgArrayMap",
    "RingBufMap", "PerfEventArrayMap", "QueueMap", "StackMap", "LpmTrieMap", "MapBase", "create_map",
    "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "DevMap", "DevMapHash", "CpuMap", "XskMap",
    "ArrayOfMapsMap", "HashOfMapsMap",
    "BPFError", "AssemblerError", "LoadError", "VerifierError", "ELFError", "ConfigError", "RuntimeFault",
    "MapError", "DataFileError", "PcapError", "cbpf", "pcap",
    "__version__",
    "Filter",
]
