"""The `bpfjit` command line (also `python -m bpfjit`): asm, disasm, run, verify, conformance, inspect, bench.

Lives here: the commands, argument parsing and `main`. What every command shares (reading a program file in
any of its formats, options -> `Config`, one-line error reports and exit codes) is cliinput.py. Nothing about executing or
validating programs lives here (vm.py, program.py), nor the .data format (datafile.py), the conformance
verdicts (conformance.py) or ELF objects (elf/: FILE starting with the ELF magic is loaded as an object).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, cast

from . import __version__, isa
from .asm import disassemble
from .cliinput import (EXIT, EXPECTED_ERRORS, PROG, STDIN, ArgParser, Source, UsageError,  # noqa: F401
                       _add_jit_options, _display, _elf_load, _elf_object, _elf_spec, _engine_option,
                       _non_negative, config_of, exit_status, format_r0, hex_bytes, read_input, read_program,
                       report)
from .elf import is_elf
from .errors import BPFError, LoadError, RuntimeFault
from .isa import Insn
from .log import LOGGER_NAME
from .program import Program
from .vm import VM

if TYPE_CHECKING:
    from .jit.engine import JITEngine


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


def _elf_run(args: argparse.Namespace, data: bytes) -> int:
    from .progtypes import prog_type
    obj = _elf_object(args, data)
    prog, rt, config = _elf_load(args, obj, _elf_spec(args, obj))
    ptype = prog_type(prog.prog_type)
    mem = _run_mem(args, Source("elf", []))
    if mem is None and ptype.ctx_size and ptype.packet is None:
        mem = bytes(ptype.ctx_size)             # a zeroed context (e.g. pt_regs); packet programs: the packet
    r0 = VM(prog, args.engine, config, runtime=rt).run(mem, readonly=ptype.ctx_readonly and ptype.packet is None)
    print(format_r0(r0))
    return EXIT["ok"]


def _elf_disasm(args: argparse.Namespace, data: bytes) -> int:
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


def cmd_inspect(args: argparse.Namespace) -> int:
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
