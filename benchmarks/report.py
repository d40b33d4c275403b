#!/usr/bin/env python3
"""Markdown report of the benchmark suite.

    benchmarks/report.py                      # runs the suite (pytest benchmarks --benchmark-only), then reports
    benchmarks/report.py --json run.json      # reports a finished run (pytest ... --benchmark-json=run.json)
    benchmarks/report.py --save run.json -k filter   # run (extra arguments go to pytest), keep the JSON

Tables: time per execution of each program (C -O2, JIT O0..O3 unchecked and checked, interpreter), compile
times and cache-hit load time, VM.run call overhead and run_batch vs bench. Figures come from the
`extra_info` the benchmarks record (see harness.py): the fastest round less the fixed cost of a call,
divided by the executions in it, by the thread CPU clock (`--clock cpu`, the default: robust against
other processes taking the CPU) or the wall clock (`--clock wall`, pytest-benchmark's own timing).
Only reading and formatting live here; what is measured is defined in test_bench_*.py.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OPT = 2
OPTS = range(4)
# clock -> (extra_info key of the per-execution figure, key of the fixed cost of one call)
CLOCK_KEYS = {"cpu": ("cpu_ns_per_exec", "cpu_fixed_ns_per_call"), "wall": ("ns_per_exec", "fixed_ns_per_call")}


# ---- loading ----
def run_suite(json_path: Path, pytest_args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pytest", str(HERE), "--benchmark-only", "-q",
           f"--benchmark-json={json_path}", *pytest_args]
    print("running:", " ".join(cmd), file=sys.stderr)
    res = subprocess.run(cmd, cwd=HERE.parent, check=False, stdout=sys.stderr)
    if res.returncode != 0:
        sys.exit(f"the benchmark run failed (exit status {res.returncode})")


class Results:
    """Lookup of recorded figures by extra_info fields, on one clock."""

    def __init__(self, data: dict, clock: str = "cpu"):
        self.machine = data.get("machine_info", {})
        self.datetime = data.get("datetime", "")
        self.rows = [b["extra_info"] for b in data.get("benchmarks", [])]
        self.clock = clock
        self.key, self.fixed_key = CLOCK_KEYS[clock]

    def find(self, **match) -> dict | None:
        for info in self.rows:
            if all(info.get(k) == v for k, v in match.items()):
                return info
        return None

    def ns(self, **match) -> float | None:
        info = self.find(**match)
        return info.get(self.key) if info else None

    def programs(self, kind: str) -> list[str]:
        return list(dict.fromkeys(i["program"] for i in self.rows if i.get("kind") == kind))


# ---- formatting ----
def fmt_ns(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "–"


def fmt_scaled(v: float | None, unit: str) -> str:
    """ns as µs (two decimals) or ms (one decimal)."""
    return "–" if v is None else f"{v / 1e3:,.2f}" if unit == "us" else f"{v / 1e6:,.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---- sections ----
def machine_section(res: Results) -> str:
    m = res.machine
    b = m.get("bpfjit", {})
    items = [("CPU", b.get("cpu_model") or m.get("cpu", {}).get("brand_raw", "?")),
             ("nproc", b.get("nproc", "?")), ("LLVM host CPU", b.get("llvm_host_cpu", "?")),
             ("Python", m.get("python_version", "?")), ("llvmlite", b.get("llvmlite", "?")),
             ("C compiler", f"{b.get('cc') or 'none'} ({b.get('cflags', '')})"), ("run", res.datetime),
             ("clock", {"cpu": "thread CPU time, fastest round", "wall": "wall clock, fastest round"}[res.clock])]
    return "\n".join(f"- {k}: {v}" for k, v in items)


def exec_section(res: Results) -> str:
    header = ["program", "C -O2 ns"] + [f"JIT O{o} unchecked ns" for o in OPTS] + \
             [f"JIT default (O{DEFAULT_OPT}) checked ns", "interp ns", f"ratio O{DEFAULT_OPT} unchecked/C",
              "ratio checked/C"]
    rows = []
    for p in res.programs("exec"):
        c = res.ns(kind="exec", program=p, engine="c")
        unchecked = [res.ns(kind="exec", program=p, engine="jit", opt_level=o, checked=False) for o in OPTS]
        checked = res.ns(kind="exec", program=p, engine="jit", opt_level=DEFAULT_OPT, checked=True)
        rows.append([p, fmt_ns(c)] + [fmt_ns(v) for v in unchecked] +
                    [fmt_ns(checked), fmt_ns(res.ns(kind="exec", program=p, engine="interp")),
                     fmt_ratio(unchecked[DEFAULT_OPT], c), fmt_ratio(checked, c)])
    detail_header = ["program"] + [f"JIT O{o} checked ns" for o in OPTS] + \
                    [f"checked/unchecked O{o}" for o in OPTS]
    detail = []
    for p in res.programs("exec"):
        chk = [res.ns(kind="exec", program=p, engine="jit", opt_level=o, checked=True) for o in OPTS]
        unc = [res.ns(kind="exec", program=p, engine="jit", opt_level=o, checked=False) for o in OPTS]
        detail.append([p] + [fmt_ns(v) for v in chk] + [fmt_ratio(a, b) for a, b in zip(chk, unc)])
    return ("### Time per execution (ns)\n\n" + table(header, rows) +
            "\n\n### Checked mode at every opt level\n\n" + table(detail_header, detail))


def compile_section(res: Results) -> str:
    header = ["program"] + [f"compile O{o} ms" for o in OPTS] + ["cache-hit VM() µs"]
    rows = []
    for p in dict.fromkeys(res.programs("compile") + res.programs("cache_hit")):
        per_opt = [res.ns(kind="compile", program=p, opt_level=o) for o in OPTS]
        rows.append([p] + [fmt_scaled(v, "ms") for v in per_opt] +
                    [fmt_scaled(res.ns(kind="cache_hit", program=p), "us")])
    return "### Compile time (empty compile cache; checked mode)\n\n" + table(header, rows)


def overhead_section(res: Results) -> str:
    rows = []
    for engine in ("jit", "interp"):
        for mem in ("nomem", "mem64"):
            rows.append([engine, {"nomem": "VM.run(None)", "mem64": "VM.run(64-byte numpy array)"}[mem],
                         fmt_scaled(res.ns(kind="run_overhead", engine=engine, mem=mem), "us")])
    bench = res.find(kind="exec", program="filter", engine="jit", opt_level=DEFAULT_OPT, checked=True)
    if bench and res.fixed_key in bench:
        rows.append(["jit", "VM.bench(filter record, n=0): fixed cost of one bench call",
                     fmt_scaled(bench[res.fixed_key], "us")])
    out = "### Call overhead from Python (trivial program `mov r0, 1; exit`)\n\n" + \
        table(["engine", "call", "µs per call"], rows)
    batch = res.ns(kind="batch", mode="run_batch")
    same = res.ns(kind="batch", mode="run_batch_same")
    bench = res.ns(kind="batch", mode="bench")
    brows = [["run_batch (100,000 varied records)", fmt_ns(batch)],
             ["run_batch (100,000 copies of the bench record)", fmt_ns(same)],
             ["bench (one record, same count)", fmt_ns(bench)],
             ["run_batch (same record) / bench", f"{same / bench:.2f}×" if same and bench else "–"]]
    return out + "\n\n### filter: run_batch vs bench (JIT default)\n\n" + table(["mode", "ns per record"], brows)


def helper_section(res: Results) -> str:
    rows = [[h, fmt_ns(res.ns(kind="helper_call", program=h))] for h in res.programs("helper_call")]
    return ("### Helper call from JIT code (`call X; exit` under VM.bench; no_call is the floor)\n\n" +
            table(["helper", "ns per execution"], rows))


def maps_section(res: Results) -> str:
    rows = []
    for kind, label in (("map_lookup", "lookup from JIT"), ("map_update", "update from JIT"),
                        ("tail_call", "tail call")):
        for prog in res.programs(kind):
            rows.append([f"{label}: {prog}", fmt_ns(res.ns(kind=kind, program=prog, mode="checked")),
                         fmt_ns(res.ns(kind=kind, program=prog, mode="unchecked"))])
    for prog in res.programs("map_python"):
        rows.append([f"from Python: {prog}", fmt_ns(res.ns(kind="map_python", program=prog)), "–"])
    return ("### Maps and tail calls (`VM.bench` per execution, the program's own floor included)\n\n" +
            table(["case", "checked ns", "unchecked ns"], rows))


def report(res: Results) -> str:
    return "\n\n".join(["## bpfjit benchmarks", machine_section(res), exec_section(res), compile_section(res),
                        overhead_section(res), helper_section(res), maps_section(res)]) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", "--benchmark-json", dest="json", type=Path,
                    help="report this pytest-benchmark JSON instead of running the suite")
    ap.add_argument("--save", type=Path, help="when running the suite, keep its JSON here")
    ap.add_argument("--clock", choices=tuple(CLOCK_KEYS), default="cpu",
                    help="thread CPU time (default) or wall-clock time")
    args, pytest_args = ap.parse_known_args(argv)
    if args.json is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.save or Path(tmp) / "bench.json"
            run_suite(path, pytest_args)
            data = json.loads(path.read_text())
    else:
        data = json.loads(args.json.read_text())
    print(report(Results(data, args.clock)), end="")


if __name__ == "__main__":
    main()
