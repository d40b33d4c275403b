"""The `bpfjit` command line (also `python -m bpfjit`): asm, disasm, run, verify, conformance, inspect, bench.

Lives here: argument parsing, reading a program file in any of its formats (`read_program`: raw bytecode,
hex text, assembly, bpf_conformance `.data`), mapping options onto `Config`, printing results, and turning
every expected error into one line on stderr plus an exit code (`EXIT`). Nothing about executing or
validating programs lives here (vm.py, program.py), nor the .data format (datafile.py), the conformance
verdicts (conformance.py) or ELF objects (elf/: FILE starting with the ELF magic is loaded as an object).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, NoReturn, Sequence, cast

from . import __version__, datafile, isa
from .asm import assemble_insns, disassemble
from .elf import is_elf
from .errors import AssemblerError, BPFError, LoadError, RuntimeFault
from .isa import Insn
from .log import LOGGER_NAME
from .program import Config, Program
from .vm import ENGINES, VM

if TYPE_CHECKING:
    from .jit.engine import JITEngine

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


def cmd_asm(args: argparse.Namespace) -> int:
    prog = Program.from_insns(read_program(args.file).insns)
    code = prog.to_bytes()
    if args.hex:
        words = (int.from_bytes(code[i:i + 8], "little") for i in range(0, len(code), 8))
        _write("".join(f"{w:#018x}\n" for w in words), args.output)
    else:
        _write(code, args.output)
    return EXIT["ok"]


def _complete(insns: list[Insn]) -> list[Insn]:
    """Refuse what is not a program at all (the same LoadError the loader gives); other invalid slots are
    shown by the disassembler as `# invalid` lines."""
    if not insns:
        raise LoadError("empty program")
    if len(insns) in isa.lddw_slots(insns):
        raise LoadError("lddw is truncated: its second slot is missing", len(insns) - 1)
    return insns


def cmd_disasm(args: argparse.Namespace) -> int:
    data = read_input(args.file)
    if is_elf(data):
        return _elf_disasm(args, data)
    insns = _complete(read_program(args.file, data).insns)
    if args.ir or args.native:
        jit = cast("JITEngine", VM(Program(insns), "jit", config_of(args)).engine)
        text = jit.ir() if args.ir else jit.native_asm()
    else:
        text = disassemble(insns)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT["ok"]


def format_r0(r0: int) -> str:
    signed = f", signed {r0 - (1 << 64)}" if r0 >> 63 else ""
    return f"{r0:#x} ({r0}{signed})"


def _run_mem(args: argparse.Namespace, src: Source) -> bytes | None:
    if args.mem is not None:
        return hex_bytes(args.mem, "--mem")
    if args.mem_file is not None:
        return Path(args.mem_file).read_bytes()
    return src.mem


def cmd_run(args: argparse.Namespace) -> int:
    data = read_input(args.file)
    if is_elf(data):
        return _elf_run(args, data)
    src = read_program(args.file, data)
    mem = _run_mem(args, src)
    r0 = VM(Program(src.insns), args.engine, config_of(args)).run(mem)
    print(format_r0(r0))
    return EXIT["ok"]


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


def _elf_run(args, data: bytes) -> int:
    from .progtypes import prog_type
    obj = _elf_object(args, data)
    prog, rt, config = _elf_load(args, obj, _elf_spec(args, obj))
    ptype = prog_type(prog.prog_type)
    mem = _run_mem(args, Source("elf", []))
    if mem is None and ptype.ctx_size:
        mem = bytes(ptype.ctx_size)             # a zeroed context (e.g. pt_regs)
    r0 = VM(prog, args.engine, config, runtime=rt).run(mem, readonly=ptype.ctx_readonly)
    print(format_r0(r0))
    return EXIT["ok"]


def _elf_disasm(args, data: bytes) -> int:
    obj = _elf_object(args, data)
    if args.ir or args.native:
        prog, rt, config = _elf_load(args, obj, _elf_spec(args, obj))
        jit = VM(prog, "jit", config, runtime=rt).engine
        text = jit.ir() if args.ir else jit.native_asm()
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        return EXIT["ok"]
    specs = [_elf_spec(args, obj)] if args.program is not None else list(obj.programs.values())
    for spec in specs:
        print(f"; program {spec.name} (section {spec.section}, type {spec.prog_type}, {len(spec)} instructions)")
        if spec.error is not None:
            print(f"; cannot load: {spec.error}")
        for pc, ref in spec.refs:
            print(f"; instruction {pc}: {ref.kind} {ref.name}" + (f"+{ref.offset}" if ref.kind == "data" else ""))
        text = disassemble(spec.insns)
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT["ok"]


def cmd_inspect(args) -> int:
    data = read_input(args.file)
    if not is_elf(data):
        raise UsageError(f"{_display(args.file)}: not an ELF object")
    obj = _elf_object(args, data)
    version = "none" if obj.kern_version is None else f"{obj.kern_version:#x}"
    print(f"license {obj.license!r}, kern_version {version}")
    print(f"programs ({len(obj.programs)}):")
    for spec in obj.programs.values():
        extra = f" calls {', '.join(spec.subprograms)}" if spec.subprograms else ""
        extra += f" maps {', '.join(spec.maps)}" if spec.maps else ""
        extra += f" [cannot load: {spec.error}]" if spec.error else ""
        print(f"  {spec.name:24} {spec.section:28} {spec.prog_type:16} {len(spec):6} insns{extra}")
    print(f"maps ({len(obj.maps)}):")
    for m in obj.maps.values():
        extra = f" flags {m.flags:#x}" if m.flags else ""
        extra += f" pinning {m.pinning}" if m.pinning else ""
        extra += f" inner {m.inner.type}" if m.inner else ""
        extra += f" values {m.values}" if m.values else ""
        print(f"  {m.name:24} {m.type:16} key {m.key_size:3} value {m.value_size:5} max_entries {m.max_entries}"
              f"{extra}")
    return EXIT["ok"]


def cmd_conformance(args: argparse.Namespace) -> int:
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


def cmd_verify(args: argparse.Namespace) -> int:
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


_EPILOG = ("FILE is raw bytecode, hex text (bytes, or 0x-prefixed 64-bit words), assembly, a bpf_conformance "
           ".data file or a BPF ELF object ('-' = stdin). Exit status: 0 ok, 1 error, 2 the program faulted, "
           "130 interrupted.")


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], summary: str,
             file_arg: str = "file") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=_EPILOG)
    p.add_argument(file_arg, metavar=file_arg.upper())
    p.set_defaults(func=func)
    return p


def build_parser() -> ArgParser:
    ap = ArgParser(prog=PROG, description="Run eBPF programs in user space (reference interpreter or LLVM JIT).",
                   epilog=_EPILOG)
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="show the library's log on stderr (-v: info, -vv: debug, e.g. compile times)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "asm", cmd_asm, "assemble to raw little-endian bytecode (validated)")
    p.add_argument("-o", "--output", metavar="OUT", help="write to OUT (default: stdout, never a terminal)")
    p.add_argument("--hex", action="store_true", help="print 64-bit instruction words in hex, one per line")

    p = _command(sub, "disasm", cmd_disasm, "print a program as assembly, or its LLVM IR / native code")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--ir", action="store_true", help="the optimised LLVM IR the JIT compiles")
    view.add_argument("--native", action="store_true", help="the native assembly the JIT produces")
    _add_jit_options(p)

    p.add_argument("--program", metavar="NAME", help="ELF input: the program to show (default: all)")

    p = _command(sub, "run", cmd_run, "run a program once and print r0 in hex and decimal")
    p.add_argument("--program", metavar="NAME", help="ELF input: the program to run (function or section name)")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--mem", metavar="HEX", help="input memory as hex bytes (default: a .data file's mem)")
    mem.add_argument("--mem-file", metavar="F", help="input memory read from file F")
    _engine_option(p)
    p.add_argument("--cpu", type=int, choices=range(1, 5), default=4, metavar="1..4",
                   help="highest CPU version accepted at load (default 4)")
    p.add_argument("--limit", type=_non_negative, metavar="N",
                   help="instruction limit per run (0 = none; default 10000000)")
    _add_jit_options(p)

    _command(sub, "inspect", cmd_inspect, "list the programs and maps of a BPF ELF object")

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

    from .benchcli import register as _register_bench
    _register_bench(sub, _command, _add_jit_options)
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


@contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """-v / -vv: the "bpfjit" logger's records on stderr while the command runs (the library itself only
    has a NullHandler)."""
    if not verbosity:
        yield
        return
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see EXIT)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        with _logging_to_stderr(args.verbose):
            return args.func(args)
    except SystemExit as e:
        return exit_status(e)
    except EXPECTED_ERRORS as e:
        file: str | None = getattr(args, "file", None)
        names_file = isinstance(e, BPFError) and not isinstance(e, RuntimeFault)
        return report(PROG, e, f"{_display(file)}: " if file is not None and names_file else "")


if __name__ == "__main__":
    sys.exit(main())
