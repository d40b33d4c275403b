"""The bpf_conformance runner's plugin: `bpfjit-conformance` / `python -m bpfjit.conformance`.

Protocol: memory as hex in argv[1] (optional), the program as hex bytes on stdin, r0 printed in hex on
stdout and exit 0; on any error one line on stderr and exit 1. All groups and CPU v4 are enabled.
"""
from __future__ import annotations

import argparse
import sys

from .errors import BPFError
from .program import Config, Program
from .vm import ENGINES, VM


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bpfjit-conformance", description=__doc__.splitlines()[0])
    ap.add_argument("memory", nargs="?", default="", help="input memory as hex bytes")
    ap.add_argument("--engine", choices=ENGINES, default="jit")
    ap.add_argument("--program", help="program as hex bytes (default: read stdin)")
    args = ap.parse_args(argv)
    try:
        prog_hex = args.program if args.program is not None else sys.stdin.read()
        code = _hex_bytes(prog_hex)
        mem = _hex_bytes(args.memory) if args.memory.strip() else None
        config = Config(cpu=4)
        prog = Program.from_bytes(code, config)
        r0 = VM(prog, args.engine, config).run(mem)
    except (BPFError, ValueError) as e:
        print(f"bpfjit-conformance: {e}", file=sys.stderr)
        return 1
    print(f"{r0:x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
