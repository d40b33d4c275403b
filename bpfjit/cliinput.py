"""What every `bpfjit` command shares: reading a program file in any of its formats (`read_program`: raw
bytecode, hex text, assembly, bpf_conformance `.data`; ELF objects through `_elf_*`), mapping options onto
`Config`, formatting r0, and turning every expected error into one line on stderr plus an exit code (`EXIT`,
`report`). cli.py (the commands), conformance.py and benchcli.py import from here; nothing here imports them.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, NoReturn

from . import datafile, isa
from .asm import assemble_insns
from .errors import AssemblerError, BPFError, RuntimeFault
from .isa import Insn
from .program import Config
from .vm import ENGINES


PROG = "bpfjit"


EXIT = {"ok": 0, "error": 1, "fault": 2, "interrupted": 130}


STDIN = "-"


class UsageError(ValueError):
    """A bad command line (reported like every other error: one line, exit 1)."""


class ArgParser(argparse.ArgumentParser):
    """argparse with one-line errors: they raise UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------ program input
class Source(NamedTuple):
    kind: str                  # "binary" | "hex" | "asm" | "data"
    insns: list[Insn]
    mem: bytes | None = None   # the `-- mem` section of a .data file


_DATA_SECTION = re.compile(r"^--\s*(asm|raw)\s*$", re.M)


_HEX_TOKEN = re.compile(r"(0x)?[0-9a-f]+", re.I)


def hex_bytes(text: str, what: str = "hex") -> bytes:
    """Bytes written as hex digits, whitespace anywhere ("b7 00 ..", "b700..")."""
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        raise ValueError(f"{what}: not a sequence of hex bytes: {text.strip()[:40]!r}") from None


def _hex_program(tokens: list[str], name: str) -> bytes:
    """Either 64-bit words `0x...` (the .data `raw` form, little-endian) or plain hex bytes."""
    words = [t for t in tokens if t[:2].lower() == "0x"]
    if not words:
        return hex_bytes(" ".join(tokens), name)
    if len(words) != len(tokens):
        raise ValueError(f"{name}: mixes 0x-prefixed 64-bit words with plain hex bytes")
    too_long = [w for w in words if len(w) > 18]
    if too_long:
        raise ValueError(f"{name}: {too_long[0]} does not fit in a 64-bit instruction word")
    return b"".join(int(w, 16).to_bytes(8, "little") for w in words)


def _as_text(data: bytes) -> str | None:
    """The file as text, or None if it is binary (NUL bytes or not UTF-8)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _data_file(text: str, name: str) -> Source:
    df = datafile.parse(text, name)            # DataFileError names the line
    try:
        insns = datafile.insns_of(df)
    except AssemblerError as e:   # number lines from the top of the file, not of the asm section
        if e.line_no is None:
            raise
        raise AssemblerError(e.reason, e.line_no + df.asm_line, e.line) from None
    return Source("data", insns, df.mem if df.has_mem else None)


def read_input(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()


def read_program(path: str, data: bytes | None = None) -> Source:
    """Read FILE ("-" = stdin) and detect its format: .data (a `-- asm`/`-- raw` section), hex text (only hex
    bytes or 0x words, `#` comments allowed), assembly (any other text), else raw little-endian bytecode."""
    data = read_input(path) if data is None else data
    name = _display(path)
    text = _as_text(data)
    if text is None:
        return Source("binary", isa.decode(data))
    if path.endswith(".data") or _DATA_SECTION.search(text):
        return _data_file(text, name)
    tokens = [t for line in text.splitlines() for t in line.split("#", 1)[0].split()]
    if tokens and all(_HEX_TOKEN.fullmatch(t) for t in tokens):
        return Source("hex", isa.decode(_hex_program(tokens, name)))
    return Source("asm", assemble_insns(text))


def _display(path: str) -> str:
    return "<stdin>" if path == STDIN else path


# ------------------------------------------------------------------------------------------ options
# argparse dest -> (Config field, conversion); options a subcommand does not define keep Config's default
_CONFIG_OPTIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "cpu": ("cpu", int),
    "limit": ("insn_limit", lambda n: n or None),
    "unchecked": ("checked", lambda unchecked: False if unchecked else None),
    "safety": ("safety", str),
    "opt": ("opt_level", int),
}


def config_of(args: argparse.Namespace) -> Config:
    kw = {field: conv(getattr(args, dest)) for dest, (field, conv) in _CONFIG_OPTIONS.items()
          if getattr(args, dest, None) is not None}
    return Config(**kw)


def _non_negative(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return n


def _add_jit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unchecked", action="store_true",
                   help="JIT: no memory bounds checks and no instruction meter (the interpreter always checks); "
                        "the same as --safety trusted")
    p.add_argument("--safety", choices=("auto", "verified", "checked", "trusted"), default="auto",
                   help="auto (default): verify, run proven programs without runtime checks and the rest "
                        "checked; verified: refuse what the verifier does not prove; checked: runtime checks "
                        "everywhere; trusted: no checks")
    p.add_argument("--opt", type=int, choices=range(4), default=2, metavar="N",
                   help="JIT: LLVM optimisation level 0..3 (default 2)")


def _engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="jit", help="execution engine (default jit)")


def format_r0(r0: int) -> str:
    signed = f", signed {r0 - (1 << 64)}" if r0 >> 63 else ""
    return f"{r0:#x} ({r0}{signed})"


# ------------------------------------------------------------------------------------------ ELF input
def _elf_object(args, data: bytes):
    from .elf import ObjectFile
    return ObjectFile(data, _display(args.file))


def _elf_spec(args, obj):
    """The program --program names (by function or section name), or the object's only program."""
    name = getattr(args, "program", None)
    if name is None:
        if len(obj.programs) != 1:
            raise UsageError(f"{_display(args.file)} has {len(obj.programs)} programs; choose one with --program "
                             f"({', '.join(obj.programs) or 'none'})")
        name = next(iter(obj.programs))
    try:
        return obj.programs[name]
    except KeyError:
        raise UsageError(f"{_display(args.file)} has no program {name!r} (programs: "
                         f"{', '.join(obj.programs) or 'none'})") from None


def _elf_load(args, obj, spec):
    """Load one program in a runtime built for the object's kernel version (there is no running kernel to
    match in a command-line run)."""
    from .runtime import Runtime
    config = config_of(args)
    kv = {} if spec.kern_version is None else {"kern_version": spec.kern_version}
    loaded = obj.load(Runtime(config=config, **kv), config, programs=[spec.name])
    return loaded.programs[spec.name], loaded.runtime, config


# --------------------------------------------------------------------------------------------- main
def _os_message(e: OSError) -> str:
    return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again on the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# expected error -> (message, exit status); the first matching class wins. Anything else is a bug.
_REPORTS = (
    (RuntimeFault, lambda e: (f"fault: {e}", EXIT["fault"])),
    (BPFError, lambda e: (str(e), EXIT["error"])),
    (BrokenPipeError, lambda e: (None, EXIT["error"])),     # `bpfjit disasm x | head`: stop quietly
    (OSError, lambda e: (_os_message(e), EXIT["error"])),
    (ValueError, lambda e: (str(e), EXIT["error"])),
    (KeyboardInterrupt, lambda e: ("interrupted", EXIT["interrupted"])),
)


EXPECTED_ERRORS = tuple(cls for cls, _ in _REPORTS)


def report(prog: str, e: BaseException, where: str = "") -> int:
    """Print the one-line message `prog: [where]message` for an expected error; returns the exit status."""
    message, status = next(describe(e) for cls, describe in _REPORTS if isinstance(e, cls))
    if message is None:
        _silence_stdout()
    else:
        print(f"{prog}: {where}{message}", file=sys.stderr)
    return status


def exit_status(e: SystemExit) -> int:
    """The status of argparse's own exits (--help, --version)."""
    return e.code if isinstance(e.code, int) else EXIT["ok"]
