"""The compile-time curve: time and peak memory to build a VM (lowering + LLVM passes + code generation)
for generated programs (benchmarks/compilegen.py: alu, mem, stack, branchy) of 100 ... 40,000
instructions, checked and trusted, each measured in a fresh process with the disk cache off; plus cold
start (first VM(...).run() in a fresh process, disk cache empty, and from the disk cache) and the first
run_batch after the first run. Writes the table (and a PNG plot if matplotlib is installed) into
docs/compile.md between the CURVE markers.

    python benchmarks/compile_curve.py [--sizes 100,1000,10000,40000] [--kinds alu,mem,stack,branchy]
                                       [--opt 2] [--no-write] [--timeout 600]

Run it from the project root (PYTHONPATH=. or an installed bpfjit).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "compile.md"
BEGIN, END = "<!-- CURVE:BEGIN -->", "<!-- CURVE:END -->"

_ONE = r"""
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from compilegen import program
from bpfjit import VM, Config
VM(program("alu", 20), "jit").run(bytes(256))            # support code compiled, imports done
kind, n, checked, opt = {kind!r}, {n}, {checked}, {opt}
cfg = Config(opt_level=opt) if checked else Config(checked=False, insn_limit=None, opt_level=opt)
p = program(kind, n)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.thread_time()
vm = VM(p, "jit", cfg)
t1, c1 = time.perf_counter(), time.thread_time()
r = vm.run(bytes(256))
print(json.dumps(dict(wall=t1 - t0, cpu=c1 - c0, rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      rss_before_mib=rss0 / 1024, r0=r)))
"""

_COLD = r"""
import time
t0 = time.perf_counter()
from bpfjit import VM, Program
import bpfjit.jit, bpfjit.helpers.builtin, numpy, llvmlite.binding     # imports are not compile time
p = Program.from_asm({src!r})
t1 = time.perf_counter()
vm = VM(p, "jit")
vm.run(bytes(64))
t2 = time.perf_counter()
import numpy as np
recs = np.zeros((10, 64), np.uint8)
vm.run_batch(recs)
t3 = time.perf_counter()
import json
print(json.dumps(dict(imports=t1 - t0, first_run=t2 - t1, first_batch=t3 - t2)))
"""


def _py(code: str, env: dict, timeout: float) -> dict | None:
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(cache) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["BPFJIT_CACHE_DIR"] = str(cache) if cache else "0"
    env.pop("PYTHONDONTWRITEBYTECODE", None)        # cold start with the usual .pyc files
    return env


def curve(kinds, sizes, opt, timeout):
    rows = []
    for kind in kinds:
        for checked in (True, False):
            for n in sizes:
                res = _py(_ONE.format(bench=str(HERE), kind=kind, n=n, checked=checked, opt=opt), _env(None),
                          timeout)
                rows.append(dict(kind=kind, n=n, checked=checked, opt=opt, **(res or {"timeout": timeout})))
                print(rows[-1], flush=True)
    return rows


def cold(src: str):
    out = {}
    with tempfile.TemporaryDirectory() as d:
        out["empty cache"] = _py(_COLD.format(src=src), _env(d), 300)
        out["from disk cache"] = _py(_COLD.format(src=src), _env(d), 300)
    out["disk cache off"] = _py(_COLD.format(src=src), _env(None), 300)
    return out


def table(rows, colds) -> str:
    lines = ["| kind | mode | instructions | compile CPU ms | wall ms | µs / instruction | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mode = "checked" if r["checked"] else "trusted"
        if "cpu" not in r:
            lines.append(f"| {r['kind']} | {mode} | {r['n']:,} | > {r['timeout']} s | | | |")
            continue
        lines.append(f"| {r['kind']} | {mode} | {r['n']:,} | {r['cpu'] * 1e3:,.1f} | {r['wall'] * 1e3:,.1f} | "
                     f"{r['cpu'] / r['n'] * 1e6:,.1f} | {r['rss_mib']:,.0f} |")
    lines += ["", "Slope (CPU time ratio between consecutive sizes: ×10 or ×4 is linear):", ""]
    for kind in sorted({r["kind"] for r in rows}):
        for checked in (True, False):
            pts = {r["n"]: r["cpu"] for r in rows if r["kind"] == kind and r["checked"] == checked and "cpu" in r}
            ns = sorted(pts)
            steps = ", ".join(f"{a:,}→{b:,}: ×{pts[b] / pts[a]:.1f}" for a, b in zip(ns, ns[1:]))
            lines.append(f"* {kind} {'checked' if checked else 'trusted'}: {steps}")
    if colds:
        lines += ["", "| fresh process, 3-instruction program | imports ms | first VM + run ms | first run_batch ms |",
                  "|---|---:|---:|---:|"]
        for label, c in colds.items():
            if c:
                lines.append(f"| {label} | {c['imports'] * 1e3:.1f} | {c['first_run'] * 1e3:.1f} | "
                             f"{c['first_batch'] * 1e3:.1f} |")
    return "\n".join(lines)


def plot(rows, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind in sorted({r["kind"] for r in rows}):
        for checked in (True, False):
            pts = sorted((r["n"], r["cpu"]) for r in rows if r["kind"] == kind and r["checked"] == checked
                         and "cpu" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", linestyle="-" if checked else "--",
                        label=f"{kind} {'checked' if checked else 'trusted'}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instructions")
    ax.set_ylabel("compile CPU seconds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Compile time\n\n{BEGIN}\n{END}\n"
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000,40000")
    ap.add_argument("--kinds", default="alu,mem,stack,branchy")
    ap.add_argument("--opt", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-cold", action="store_true")
    a = ap.parse_args(argv)
    rows = curve(a.kinds.split(","), [int(s) for s in a.sizes.split(",")], a.opt, a.timeout)
    colds = {} if a.no_cold else cold("ldxb %r0, [%r1+3]\nadd %r0, %r2\nexit")
    text = table(rows, colds)
    print(text)
    if not a.no_write:
        png = DOC.parent / "compile_curve.png"
        if plot(rows, png):
            text += f"\n\n![compile time against program size]({png.name})"
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
