"""The `bpfjit` command line (also `python -m bpfjit`): asm, disasm, run, verify, conformance.

Lives here: argument parsing, reading a program file in any of its formats (`read_program`: raw bytecode,
hex text, assembly, bpf_conformance `.data`), mapping options onto `Config`, printing results, and turning
every expected error into one line on stderr plus an exit code (`EXIT`). Nothing about executing or
validating programs lives here (vm.py, program.py), nor the .data format (datafile.py) or the conformance
verdicts (conformance.py).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

from . import __version__, datafile, isa
from .asm import assemble_insns, disassemble
from .errors import AssemblerError, BPFError, RuntimeFault
from .isa import Insn
from .program import Config, Program
from .vm import ENGINES, VM

PROG = "bpfjit"
EXIT = {"ok": 0, "error": 1, "fault": 2, "interrupted": 130}
STDIN = "-"


class UsageError(ValueError):
    """A bad command line (reported like every other error: one line, exit 1)."""


class ArgParser(argparse.ArgumentParser):
    """argparse with one-line errors: they raise UsageError instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------ program input
class Source(NamedTuple):
    kind: str                  # "binary" | "hex" | "asm" | "data"
    insns: list[Insn]
    mem: bytes | None = None   # the `-- mem` section of a .data file


_DATA_SECTION = re.compile(r"^--\s*(asm|raw)\s*$", re.M)
_ASM_SECTION = re.compile(r"^--\s*asm\s*$", re.M)
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
    try:
        df = datafile.parse(text, name)
    except ValueError as e:
        raise ValueError(f"{name}: malformed .data file: {e}") from None
    try:
        insns = datafile.insns_of(df)
    except AssemblerError as e:   # number lines from the top of the file, not of the asm section
        header = _ASM_SECTION.search(text)
        if header is None or e.line_no is None:
            raise
        line_no = e.line_no + text.count("\n", 0, header.start()) + 1
        raise AssemblerError(e.reason, line_no, e.line) from None
    return Source("data", insns, df.mem if df.has_mem else None)


def read_program(path: str) -> Source:
    """Read FILE ("-" = stdin) and detect its format: .data (a `-- asm`/`-- raw` section), hex text (only hex
    bytes or 0x words, `#` comments allowed), assembly (any other text), else raw little-endian bytecode."""
    data = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
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
_CONFIG_OPTIONS = {
    "cpu": ("cpu", int),
    "limit": ("insn_limit", lambda n: n or None),
    "unchecked": ("checked", lambda unchecked: not unchecked),
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
                   help="JIT: no memory bounds checks and no instruction meter (the interpreter always checks)")
    p.add_argument("--opt", type=int, choices=range(4), default=2, metavar="N",
                   help="JIT: LLVM optimisation level 0..3 (default 2)")


def _engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="jit", help="execution engine (default jit)")


# ----------------------------------------------------------------------------------------- commands
def _write(data: bytes | str, output: str | None) -> None:
    raw = data if isinstance(data, bytes) else data.encode()
    if output is not None:
        Path(output).write_bytes(raw)
    elif isinstance(data, str):
        sys.stdout.write(data)
    elif sys.stdout.isatty():
        raise UsageError("refusing to write binary bytecode to a terminal (use -o FILE or --hex)")
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()


def cmd_asm(args) -> int:
    prog = Program.from_insns(read_program(args.file).insns)
    code = prog.to_bytes()
    if args.hex:
        words = (int.from_bytes(code[i:i + 8], "little") for i in range(0, len(code), 8))
        _write("".join(f"{w:#018x}\n" for w in words), args.output)
    else:
        _write(code, args.output)
    return EXIT["ok"]


def cmd_disasm(args) -> int:
    insns = read_program(args.file).insns
    if args.ir or args.native:
        jit = VM(Program(insns), "jit", config_of(args)).engine
        text = jit.ir() if args.ir else jit.native_asm()
    else:
        text = disassemble(insns)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT["ok"]


def format_r0(r0: int) -> str:
    signed = f", signed {r0 - (1 << 64)}" if r0 >> 63 else ""
    return f"{r0:#x} ({r0}{signed})"


def _run_mem(args, src: Source) -> bytes | None:
    if args.mem is not None:
        return hex_bytes(args.mem, "--mem")
    if args.mem_file is not None:
        return Path(args.mem_file).read_bytes()
    return src.mem


def cmd_run(args) -> int:
    src = read_program(args.file)
    mem = _run_mem(args, src)
    r0 = VM(Program(src.insns), args.engine, config_of(args)).run(mem)
    print(format_r0(r0))
    return EXIT["ok"]


def cmd_conformance(args) -> int:
    from .conformance import run_directory
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"{args.dir}: not a directory")
    outcomes = run_directory(folder, args.engine)
    if not outcomes:
        raise UsageError(f"{args.dir}: no .data files")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("pass", "fail", "skip")}
    for o in outcomes:
        if o.status != "pass":
            print(f"{o.status.upper()} {o.path.name}: {o.message}")
    skipped = f", {counts['skip']} skipped" if counts["skip"] else ""
    print(f"{counts['pass']} passed, {counts['fail']} failed{skipped}")
    return EXIT["error"] if counts["fail"] else EXIT["ok"]


def cmd_verify(args) -> int:
    """Verify a program (the static verifier); prints the log when asked and the verdict."""
    from .errors import VerifierError
    from .verifier import verify
    from .runtime import host_kern_version
    src = read_program(args.file)
    kern = host_kern_version() if args.kern_version is None else args.kern_version
    prog = Program(src.insns, prog_type=args.prog_type, kern_version=kern, license=args.license)
    prog.validate()
    try:
        res = verify(prog, mem_size=args.mem_size, log_level=args.log)
    except VerifierError as e:
        if args.log:
            sys.stdout.write(e.log)
        raise
    sys.stdout.write(res.log)
    print(f"verified: {res.insn_processed} insns processed")
    return EXIT["ok"]


_EPILOG = ("FILE is raw bytecode, hex text (bytes, or 0x-prefixed 64-bit words), assembly or a bpf_conformance "
           ".data file ('-' = stdin). Exit status: 0 ok, 1 error, 2 the program faulted, 130 interrupted.")


def _command(sub, name: str, func, summary: str, file_arg: str = "file") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=_EPILOG)
    p.add_argument(file_arg, metavar=file_arg.upper())
    p.set_defaults(func=func)
    return p


def build_parser() -> ArgParser:
    ap = ArgParser(prog=PROG, description="Run eBPF programs in user space (reference interpreter or LLVM JIT).",
                   epilog=_EPILOG)
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "asm", cmd_asm, "assemble to raw little-endian bytecode (validated)")
    p.add_argument("-o", "--output", metavar="OUT", help="write to OUT (default: stdout, never a terminal)")
    p.add_argument("--hex", action="store_true", help="print 64-bit instruction words in hex, one per line")

    p = _command(sub, "disasm", cmd_disasm, "print a program as assembly, or its LLVM IR / native code")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--ir", action="store_true", help="the optimised LLVM IR the JIT compiles")
    view.add_argument("--native", action="store_true", help="the native assembly the JIT produces")
    _add_jit_options(p)

    p = _command(sub, "run", cmd_run, "run a program once and print r0 in hex and decimal")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--mem", metavar="HEX", help="input memory as hex bytes (default: a .data file's mem)")
    mem.add_argument("--mem-file", metavar="F", help="input memory read from file F")
    _engine_option(p)
    p.add_argument("--cpu", type=int, choices=range(1, 5), default=4, metavar="1..4",
                   help="highest CPU version accepted at load (default 4)")
    p.add_argument("--limit", type=_non_negative, metavar="N",
                   help="instruction limit per run (0 = none; default 10000000)")
    _add_jit_options(p)

    p = _command(sub, "verify", cmd_verify, "verify a program statically (kernel-style verifier); exit 1 when "
                 "refused")
    p.add_argument("--log", type=int, choices=(0, 1, 2), default=0, metavar="0|1|2",
                   help="1: the failing path, 2: every instruction with its register state")
    p.add_argument("--mem-size", type=_non_negative, default=None, metavar="N",
                   help="raw programs: r1 points to at least N bytes (r2 >= N)")
    p.add_argument("--prog-type", default="raw", metavar="T", help="program type: raw (default) or kprobe")
    p.add_argument("--kern-version", type=_non_negative, default=None, metavar="N",
                   help="the program's kern_version (default: the running kernel's)")
    p.add_argument("--license", default="GPL", metavar="L", help="the program's license (default GPL)")

    p = _command(sub, "conformance", cmd_conformance, "run every .data file of a directory (bpf_conformance "
                 "format, CPU v4, all groups)", file_arg="dir")
    _engine_option(p)
    return ap


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


def main(argv=None) -> int:
    """Run the command line; returns the exit status (see EXIT)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:
        return exit_status(e)
    except EXPECTED_ERRORS as e:
        file = getattr(args, "file", None)
        names_file = file is not None and isinstance(e, BPFError) and not isinstance(e, RuntimeFault)
        return report(PROG, e, f"{_display(file)}: " if names_file else "")


if __name__ == "__main__":
    sys.exit(main())
