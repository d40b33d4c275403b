"""`bpfjit bench FILE`: time a program in each engine, as a table, JSON or a chart.

    bpfjit bench FILE [--program NAME] [--data F] [--repeat N] [--engines interp,jit] [--opt 0-3] [--json]
                      [--plot out.png]

For each engine: the load time (VM construction: for the JIT the compile, or its disk-cache hit), then per mode
the ns per run over ROUNDS rounds (min and median) and the speed-up of the median over the interpreter's:
    call   `vm.run(mem)` from Python, once per run (what an embedder calling per event pays)
    loop   `vm.test_run(..., repeat=N)` (BPF_PROG_TEST_RUN: one native loop in the JIT)
FILE is anything `bpfjit run` takes (cli.read_program, ELF objects through cli's ELF helpers); the input is
--data F, else a .data file's mem, else a zeroed context for typed programs. --plot needs matplotlib
(`pip install bpfjit[plot]`). Argument parsing conventions and error reporting are cli.py's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROUNDS = 5
MODES = ("call", "loop")


def register(sub: Any, command: Any, add_jit_options: Any) -> None:
    """Add the `bench` subcommand to cli.py's subparsers (`command` is cli._command)."""
    p = command(sub, "bench", cmd_bench, "time a program in each engine: ns per run, compile time, speed-up")
    p.add_argument("--program", metavar="NAME", help="ELF input: the program to time (function or section name)")
    p.add_argument("--data", metavar="F", help="input memory (the context) read from file F")
    p.add_argument("--repeat", type=_positive, default=1000, metavar="N", help="runs per round (default 1000)")
    p.add_argument("--engines", type=_engines, default=("interp", "jit"), metavar="E[,E]",
                   help="engines to time, comma-separated (default interp,jit)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", metavar="OUT", help="also draw a chart of ns/run to OUT (.png, .svg; matplotlib)")
    add_jit_options(p)


def _positive(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return n


def _engines(text: str) -> tuple[str, ...]:
    from .vm import ENGINES
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in ENGINES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine {', '.join(bad) or text!r}; choose from "
                                         f"{', '.join(ENGINES)}")
    return names


def _loader(args: argparse.Namespace):
    """(make_vm(engine) -> VM, mem) for FILE."""
    from . import cliinput as cli
    from .elf import is_elf
    from .program import Program
    from .progtypes import prog_type
    from .vm import VM
    data = cli.read_input(args.file)
    if is_elf(data):
        obj = cli._elf_object(args, data)
        spec = cli._elf_spec(args, obj)
        prog, rt, config = cli._elf_load(args, obj, spec)

        def make(engine: str):
            return VM(prog, engine, config, runtime=rt)
        mem = None
    else:
        src = cli.read_program(args.file, data)
        config = cli.config_of(args)
        prog = Program(src.insns)

        def make(engine: str):
            return VM(prog, engine, config)
        mem = src.mem
    if args.data is not None:
        mem = Path(args.data).read_bytes()
    ptype = prog_type(prog.prog_type)
    if mem is None and ptype.ctx_size:
        mem = bytes(ptype.ctx_size)
    return make, mem


def _time_call(vm, buf, repeat: int) -> float:
    run = vm.run
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        run(buf)
    return (time.perf_counter_ns() - t0) / repeat


def _time_loop(vm, mem, repeat: int) -> float:
    return float(vm.test_run(ctx_in=mem, repeat=repeat).duration)


TIMERS = {"call": _time_call, "loop": _time_loop}


def measure(make, mem, engines, repeat: int, rounds: int = ROUNDS) -> list[dict]:
    """One row per engine and mode: engine, mode, min_ns, median_ns, compile_ms, cache_hit, retval, speedup."""
    import numpy as np
    rows: list[dict] = []
    for engine in engines:
        t0 = time.perf_counter()
        vm = make(engine)
        compile_ms = (time.perf_counter() - t0) * 1e3
        buf = None if mem is None else np.frombuffer(bytearray(mem), dtype=np.uint8)
        retval = vm.test_run(ctx_in=mem).retval
        for mode in MODES:
            timer = TIMERS[mode]
            timer(vm, buf if mode == "call" else mem, min(repeat, 10))      # warm-up
            samples = [timer(vm, buf if mode == "call" else mem, repeat) for _ in range(rounds)]
            rows.append({"engine": engine, "mode": mode, "min_ns": min(samples),
                         "median_ns": statistics.median(samples), "compile_ms": compile_ms,
                         "cache_hit": bool(getattr(vm.engine, "cache_hit", False)), "retval": retval,
                         "repeat": repeat, "rounds": rounds})
    base = {r["mode"]: r["median_ns"] for r in rows if r["engine"] == "interp"}
    for r in rows:
        b = base.get(r["mode"])
        r["speedup"] = (b / r["median_ns"]) if b and r["median_ns"] else None
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'engine':<7} {'mode':<5} {'min ns/run':>12} {'median ns/run':>14} {'compile ms':>11} {'vs interp':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        comp = f"{r['compile_ms']:.1f}" + ("*" if r["cache_hit"] else "")
        sp = f"{r['speedup']:.1f}x" if r["speedup"] is not None else "-"
        lines.append(f"{r['engine']:<7} {r['mode']:<5} {r['min_ns']:>12.1f} {r['median_ns']:>14.1f} {comp:>11} "
                     f"{sp:>10}")
    if any(r["cache_hit"] for r in rows):
        lines.append("* compiled code came from the disk cache")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: str, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install 'bpfjit[plot]')") from None
    labels = [f"{r['engine']}\n{r['mode']}" for r in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 4))
    ax.bar(labels, [r["median_ns"] for r in rows], color=["#888" if r["engine"] == "interp" else "#2a7"
                                                          for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ns per run (median, log scale)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def cmd_bench(args: argparse.Namespace) -> int:
    make, mem = _loader(args)
    rows = measure(make, mem, args.engines, args.repeat)
    if args.json:
        json.dump({"file": args.file, "rows": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(rows))
    if args.plot:
        plot(rows, args.plot, f"bpfjit bench {Path(args.file).name}")
    return 0
