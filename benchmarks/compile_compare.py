"""Before/after compile times of small and medium programs, measured in ONE run for several revisions of
bpfjit (each extracted with `git archive` into a temporary directory; "WORKTREE" is the checkout this
script lives in). Every figure is the minimum CPU time (thread time) over repeats of building a VM with
empty compile caches and the disk cache off, in a process that has compiled something already (warm);
processes of the revisions alternate, so load on the machine hits them alike. Also measured: the
verifier's share (the pipeline's verify step alone) and the first run_batch after VM creation (a
revision that compiles the batch loop on first use pays it there).

    python benchmarks/compile_compare.py [--rev 57f7b6f --rev WORKTREE] [--rounds 3] [--repeats 5]
                                         [--programs tiny9,filter,alu100,...] [--write]

--write puts the table into docs/compile.md between the COMPARE markers. Run it from the project root.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import io
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "compile.md"
BEGIN, END = "<!-- COMPARE:BEGIN -->", "<!-- COMPARE:END -->"
PROGRAMS = ("tiny9", "filter", "alu100", "mem100", "stack100", "branchy100", "alu1000", "mem1000", "stack1000",
            "branchy1000")

TINY9 = """ldxb %r0, [%r1+3]
jeq %r0, 7, +3
ldxh %r3, [%r1+4]
and %r3, 0xff
jgt %r3, 10, +1
mov %r0, 1
exit
mov %r0, 2
exit"""

_CHILD = r"""
TINY9 = __TINY9__
import json, os, sys, time
os.environ["BPFJIT_CACHE_DIR"] = "0"
root, bench, reps, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
sys.path.insert(0, root); sys.path.insert(0, bench)
import numpy as np
import bpfjit
assert bpfjit.__file__.startswith(root), bpfjit.__file__
from bpfjit import VM, Config, Program
from bpfjit.jit import compiler
import compilegen
src = {"tiny9": TINY9, "filter": open(os.path.join(bench, "programs", "filter.asm")).read()}
for kind in compilegen.KINDS:
    for n in (100, 1000, 10000):
        src[f"{kind}{n}"] = compilegen.source(kind, n)
modes = {"checked": dict(checked=True), "trusted": dict(checked=False, insn_limit=None)}
has_safety = hasattr(Config(), "safety")
if has_safety:
    modes["auto"] = {}
VM(Program.from_asm(TINY9), "jit", Config(checked=True)).run(bytes(256))     # support code, imports
recs = np.zeros((4, 256), np.uint8)
for name in names:
    p = Program.from_asm(src[name])
    for mode, kw in modes.items():
        cfg = Config(**kw)
        vm_t, batch_t, verify_t = [], [], []
        for _ in range(reps):
            compiler.clear_cache()
            c0 = time.thread_time()
            vm = VM(p, "jit", cfg)
            c1 = time.thread_time()
            vm.run_batch(recs)
            c2 = time.thread_time()
            vm_t.append(c1 - c0)
            batch_t.append(c2 - c1)
            if has_safety and mode == "auto":        # the verify step alone (its share of "auto")
                from bpfjit.verifier import verify
                c3 = time.thread_time()
                try:
                    verify(p, config=cfg, mem_size=cfg.mem_size)
                except Exception:
                    pass
                verify_t.append(time.thread_time() - c3)
        print(json.dumps(dict(name=name, mode=mode, vm=min(vm_t), batch=min(batch_t),
                              verify=min(verify_t) if verify_t else None)), flush=True)
""".replace("__TINY9__", repr(TINY9), 1)


def extract(rev: str, dest: Path) -> Path:
    """The bpfjit package of `rev` under dest (WORKTREE: this checkout)."""
    if rev == "WORKTREE":
        return ROOT
    data = subprocess.run(["git", "archive", rev, "bpfjit"], cwd=ROOT, check=True, capture_output=True).stdout
    out = dest / rev
    out.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(out)
    return out


def measure(revs, programs, rounds, repeats):
    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {rev: extract(rev, Path(tmp)) for rev in revs}
        for _ in range(rounds):
            for rev, root in roots.items():
                env = dict(os.environ, PYTHONPATH="")
                out = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(HERE), str(repeats),
                                      ",".join(programs)], env=env, capture_output=True, text=True, cwd=tmp)
                if out.returncode != 0:
                    raise RuntimeError(f"{rev}: {out.stderr[-2000:]}")
                for line in out.stdout.splitlines():
                    d = json.loads(line)
                    key = (d["name"], d["mode"], rev)
                    old = best.get(key)
                    best[key] = d if old is None else {k: (min(v, old[k]) if isinstance(v, float) else v)
                                                       for k, v in d.items()}
    return best


def table(best, revs, programs) -> str:
    head = "| program | mode | " + " | ".join(f"{r} VM" for r in revs) + " | " + \
        " | ".join(f"{r} VM + 1st run_batch" for r in revs) + " | verify |"
    lines = [head, "|" + "---|" * 2 + "---:|" * (2 * len(revs) + 1)]
    for name in programs:
        for mode in ("auto", "checked", "trusted"):
            cells, totals, verify = [], [], ""
            for rev in revs:
                d = best.get((name, mode, rev))
                cells.append(f"{d['vm'] * 1e3:.1f}" if d else "–")
                totals.append(f"{(d['vm'] + d['batch']) * 1e3:.1f}" if d else "–")
                if d and d.get("verify") is not None:
                    verify = f"{d['verify'] * 1e3:.1f}"
            if all(c == "–" for c in cells):
                continue
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " | " + " | ".join(totals) + f" | {verify} |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", action="append", help="git revision (repeatable); WORKTREE = this checkout")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--programs", default=",".join(PROGRAMS))
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    revs = a.rev or ["WORKTREE"]
    programs = a.programs.split(",")
    text = table(measure(revs, programs, a.rounds, a.repeats), revs, programs)
    print(text)
    if a.write:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
