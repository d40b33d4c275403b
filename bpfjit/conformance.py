"""bpf_conformance support: the upstream runner's plugin (`bpfjit-conformance`, `python -m bpfjit.conformance`)
and an in-process runner of a directory of `.data` files (`bpfjit conformance DIR`).

Plugin protocol: memory as hex in argv[1] (optional), the program as hex bytes on stdin, r0 printed in hex on
stdout and exit 0; on any error one line on stderr and a non-zero exit (2 if the program faulted, else 1).
Both runner generations are accepted: older runners pass argv[1] = memory ('' when there is none) and
argv[2] = all plugin options as one string ('' when there are none); newer ones pass the memory only when
there is some and each option as its own argument. All groups and CPU v4 are enabled.
Verdicts follow the upstream runner: a file with a result passes when r0 equals it (all 64 bits); a file
with only an `-- error` section passes when loading or running fails; a file without instructions is
skipped. The .data format itself lives in datafile.py, program input and error reporting in cli.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import datafile
from .cliinput import EXPECTED_ERRORS, ArgParser, exit_status, hex_bytes, report
from .errors import BPFError
from .log import get_logger
from .program import Config, Program
from .vm import ENGINES, VM

PROG = "bpfjit-conformance"
_log = get_logger(__name__)
CONFIG = Config(cpu=4)


# ------------------------------------------------------------------------------------- the plugin
def plugin_argv(argv: list[str]) -> list[str]:
    """Normalise both runner generations: drop empty arguments, split an options string into options."""
    out: list[str] = []
    for arg in argv:
        if arg.lstrip().startswith("-"):
            out += arg.split()
        elif arg.strip():
            out.append(arg)
    return out


def _parser() -> ArgParser:
    ap = ArgParser(prog=PROG, description="bpf_conformance plugin: program hex on stdin, r0 hex on stdout.")
    ap.add_argument("memory", nargs="?", default="", help="input memory as hex bytes")
    ap.add_argument("--engine", choices=ENGINES, default="jit", help="execution engine (default jit)")
    ap.add_argument("--program", help="program as hex bytes (default: read stdin)")
    return ap


def run_plugin(args: argparse.Namespace) -> int:
    prog_hex = args.program if args.program is not None else sys.stdin.read()
    code = hex_bytes(prog_hex, "program")
    mem = hex_bytes(args.memory, "memory") if args.memory.strip() else None
    r0 = VM(Program.from_bytes(code, CONFIG), args.engine, CONFIG).run(mem)
    print(f"{r0:x}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run_plugin(_parser().parse_args(plugin_argv(sys.argv[1:] if argv is None else list(argv))))
    except SystemExit as e:
        return exit_status(e)
    except EXPECTED_ERRORS as e:
        return report(PROG, e)


# ------------------------------------------------------------------------------- directory runner
@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str         # "pass" | "fail" | "skip"
    message: str = ""


def check_file(path: str | Path, engine: str = "jit", config: Config = CONFIG) -> Outcome:
    """The verdict on one .data file in one engine."""
    path = Path(path)
    try:
        df = datafile.load(path)
    except (OSError, ValueError) as e:
        return Outcome(path, "fail", f"cannot read the file: {e}")
    expect_error = df.error is not None and df.result is None
    try:
        insns = datafile.insns_of(df)
        if not insns:
            return Outcome(path, "skip", "no instructions")
        r0 = VM(Program(insns), engine, config).run(df.mem if df.has_mem else None)
    except BPFError as e:
        return Outcome(path, "pass" if expect_error else "fail", str(e))
    if expect_error:
        return Outcome(path, "fail", f"expected an error, got r0 {r0:#x}")
    if df.result is None:
        return Outcome(path, "fail", f"no expected result (r0 {r0:#x})")
    if r0 != df.result:
        return Outcome(path, "fail", f"r0 {r0:#x}, expected {df.result:#x}")
    return Outcome(path, "pass")


def run_directory(folder: str | Path, engine: str = "jit", config: Config = CONFIG) -> list[Outcome]:
    """check_file on every *.data file of folder (not recursive), in name order."""
    outcomes = []
    for p in sorted(Path(folder).glob("*.data")):
        outcomes.append(check_file(p, engine, config))
        _log.debug("%s (%s): %s %s", p.name, engine, outcomes[-1].status, outcomes[-1].message)
    return outcomes


if __name__ == "__main__":
    sys.exit(main())
