"""Differential fuzz campaign: random programs (tests/progen.py) run in the interpreter and the JIT.

    python tests/fuzz_engines.py --programs 100000 --seed S [--jobs 2] [--out DIR] [--runs 3]
    python tests/fuzz_engines.py --seed S --index I          # show and run one program of a campaign
    python tests/fuzz_engines.py --replay DIR/div-....data   # re-run a reproducer

`--seams F` (default 0.2) makes a fraction F of the programs seam cases (progen.SeamGenerator: array and hash
maps through the map helpers with atomics on values, prog_array tail calls, kprobe contexts, Python helpers,
forged pointers to maps the program was not loaded with: another runtime's and an unreferenced one),
compared also on the final map contents; their divergences are written as text (not minimized).

Program i of seed S is generated from `random.Random(f"{S}:{i}")`, so any program of a campaign can be
regenerated alone. Each program is compiled once and run with `--runs` mem contents, plus one run at a
random instruction limit inside the run (the JIT's compiled code does not depend on the limit's value).
A divergence (any difference `progen.compare` reports) is first checked to be the engines' doing (the
interpreter agrees with itself at other addresses), then minimized (slots replaced by `ja +0`, then
deleted) and written to --out as a .data reproducer plus a .txt description. Progress goes to stdout and
DIR/log.txt; the totals to DIR/summary.json and DIR/summary.txt.
This is a script, not a test module: pytest does not collect it (no test_ functions, name not test_*).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpfjit.interp  # noqa: E402,F401 - the engines are imported before the workers fork, so that
import bpfjit.jit  # noqa: E402,F401 - every worker runs the code the campaign started with
from bpfjit import Program, isa  # noqa: E402
from bpfjit.asm import disassemble  # noqa: E402
from bpfjit.program import jump_target  # noqa: E402
from tests import progen  # noqa: E402

NOP = progen.make(progen.JA, off=0)
MAX_MINIMIZED = 2          # divergences minimized per task (the others are written as generated)
MAX_TRIES = 300            # predicate evaluations per minimization


OPT_LEVELS = {0: 10, 1: 2, 2: 6, 3: 2}  # compile time grows with the level (about 20/40/45/55 ms)

# Confirmed, still open engine bugs (xfail tests in tests/test_differential.py): divergences they explain
# are counted under their name, not minimized again. name -> predicate(case, mode, interp outcome, jit outcome)
KNOWN_BUGS: dict = {}


def generate(seed: int, index: int, opts: dict) -> progen.Case:
    return progen.random_case(random.Random(f"{seed}:{index}"), size=opts["size"], budget=opts["budget"],
                              n_mems=opts["runs"], opt_levels=opts.get("opt") or OPT_LEVELS)


def opt_weights(text: str) -> dict:
    """"0:14,2:4" -> {0: 14, 2: 4} (JIT opt_level -> weight)."""
    return {int(k): int(v) for k, v in (part.split(":") for part in text.split(","))}


def known_bug(case, mode, a, b) -> str | None:
    return next((name for name, pred in KNOWN_BUGS.items() if pred(case, mode, a, b)), None)


def run_program(case: progen.Case, rnd: random.Random, loops: float = 1.0) -> list[tuple]:
    """[(case run, mode, interp outcome, jit outcome, differences)]: every mem with `run`, with probability
    `loops` also run_batch and bench (the JIT compiles a second module for them), then one run with an
    instruction limit inside the first run."""
    vms = (progen.make_vm(case, "interp"), progen.make_vm(case, "jit"))
    with_loops = rnd.random() < loops
    res = [(case, *r) for r in progen.run_case(case, vms, [m for m in progen.modes(case)
                                                           if with_loops or m.how == "run"])]
    first = res[0][2]
    if first.kind == "ok" and first.count and case.config.insn_limit is not None:
        lim = case.with_limit(rnd.randint(1, first.count))
        res += [(lim, *r) for r in progen.run_case(lim, only=[res[0][1]])]
    return res


# ------------------------------------------------------------------------------------- minimizing
def diverges(case: progen.Case, mode: progen.Mode, signature: tuple) -> bool:
    """Whether the case still diverges the same way (same differing fields) and is address-independent."""
    try:
        case.program()
        got = progen.run_case(case, only=[mode])[0][3]
    except Exception:   # noqa: BLE001 - an invalid candidate simply does not reproduce
        return False
    return tuple(got) == signature and progen.self_check(case, mode) == []


def delete_slot(insns: list, i: int) -> list | None:
    """insns without slot i, every jump and local call retargeted (None if insns do not validate)."""
    prog = Program(insns)
    try:
        prog.validate()
    except Exception:   # noqa: BLE001
        return None
    new = lambda p: p - (p > i)   # noqa: E731
    out = []
    for pc, (ins, f) in enumerate(zip(insns, prog.forms)):
        if pc == i:
            continue
        t = jump_target(pc, ins, f) if f is not None else None
        if t is not None:
            rel = new(t) - new(pc) - 1
            ins = ins._replace(imm=rel) if f.op in ("ja32", "call_local") else ins._replace(off=rel)
        out.append(ins)
    return out


def minimize(case: progen.Case, mode: progen.Mode, signature: tuple) -> progen.Case:
    """A smaller case with the same divergence: slots replaced by `ja +0`, then the nops deleted."""
    tries = 0

    def ok(insns) -> bool:
        nonlocal tries
        tries += 1
        return insns is not None and diverges(with_insns(case, insns), mode, signature)

    insns, changed = list(case.insns), True
    while changed and tries < MAX_TRIES:
        changed = False
        second = isa.lddw_slots(insns)
        for i in range(len(insns) - 1):
            if i in second or insns[i] == NOP or tries >= MAX_TRIES:
                continue
            cand = list(insns)
            cand[i] = NOP
            if insns[i].opcode == isa.LDDW_OPCODE:
                cand[i + 1] = NOP
            if ok(cand):
                insns, changed = cand, True
    i = 0
    while i < len(insns) and tries < MAX_TRIES:
        cand = delete_slot(insns, i) if insns[i] == NOP else None
        if cand is not None and ok(cand):
            insns = cand
        else:
            i += 1
    return with_insns(case, insns)


def with_insns(case: progen.Case, insns: list) -> progen.Case:
    return progen.Case(insns, case.config, case.mem_len, case.mems, readonly=case.readonly)


# ----------------------------------------------------------------------------------------- workers
def divergence(seed: int, index: int, case: progen.Case, mode, a, b, diffs, shrink: bool) -> dict:
    small = minimize(case, mode, tuple(diffs)) if shrink else case
    _, a2, b2, d2 = progen.run_case(small, only=[mode])[0]
    header = [f"bpfjit differential fuzz: seed {seed} program {index}" + (" (minimized)" if shrink else ""),
              f"{mode} differs in: {', '.join(d2)}", f"interp: {a2.describe()}", f"jit:    {b2.describe()}"]
    return {"seed": seed, "index": index, "diffs": diffs, "interp": a.describe(), "jit": b.describe(),
            "mode": str(mode), "config": repr(case.config), "original": disassemble(case.insns),
            "minimized": disassemble(small.insns), "min_diffs": d2, "data": progen.to_data(small, mode, header)}


def work(task, where=None) -> dict:
    """Run a range of programs. where(index, stage) records what runs now (read after a crash)."""
    seed, start, count, opts = task
    where = where or (lambda index, stage: None)
    stats = {"programs": 0, "runs": 0, "slots": 0, "outcomes": Counter(), "gen_errors": [],
             "nondeterministic": [], "divergences": [], "known": Counter()}
    for index in range(start, start + count):
        if random.Random(f"{seed}:{index}:seam").random() < opts.get("seams", 0):
            seam_program(seed, index, opts, stats, where)
            continue
        try:
            where(index, 0)
            case = generate(seed, index, opts)
            where(index, 1)
            results = run_program(case, random.Random(f"{seed}:{index}:limit"), opts["loops"])
            where(index, 2)
        except Exception:   # noqa: BLE001 - a generator or harness bug: record it and go on
            stats["gen_errors"].append({"index": index, "error": traceback.format_exc(limit=8)})
            continue
        stats["programs"] += 1
        stats["slots"] += len(case.insns)
        for run_case, mode, a, b, diffs in results:
            stats["runs"] += 1
            stats["outcomes"][a.kind] += 1
            if not diffs:
                continue
            known = known_bug(run_case, mode, a, b)
            if known:
                stats["known"][known] += 1
                break
            if progen.self_check(run_case, mode):     # the program depends on addresses: generator bug
                stats["nondeterministic"].append({"index": index, "mode": str(mode), "diffs": diffs,
                                                  "interp": a.describe(), "jit": b.describe()})
                continue
            shrink = len(stats["divergences"]) < MAX_MINIMIZED
            stats["divergences"].append(divergence(seed, index, run_case, mode, a, b, diffs, shrink))
            break   # one reproducer per program
    return stats


# Open library bugs that seam cases hit (xfail tests in tests/test_safety.py): name -> predicate.
KNOWN_SEAM_BUGS: dict = {}     # (the ldabs-in-target batch gap is fixed: issue 8)


def seam_program(seed: int, index: int, opts: dict, stats: dict, where) -> None:
    """Program `index` as a seam case (progen.SeamGenerator: maps, tail calls, kprobe ctx, Python helpers):
    every mode in both engines; a divergence is self-checked and written with the case's text (no
    minimization)."""
    try:
        where(index, 0)
        case = progen.random_seam_case(random.Random(f"{seed}:{index}"), size=opts["size"])
        where(index, 1)
        results = progen.run_seam_case(case)
        where(index, 2)
    except Exception:   # noqa: BLE001 - a generator or harness bug: record it and go on
        stats["gen_errors"].append({"index": index, "error": traceback.format_exc(limit=8)})
        return
    stats["programs"] += 1
    stats["outcomes"]["seam programs"] += 1
    for mode, a, b, diffs in results:
        stats["runs"] += 1
        stats["outcomes"][a.kind] += 1
        if not diffs:
            continue
        known = next((name for name, pred in KNOWN_SEAM_BUGS.items() if pred(case, mode, a, b)), None)
        if known:
            stats["known"][known] += 1
            return
        if progen.seam_self_check(case, mode):
            stats["nondeterministic"].append({"index": index, "mode": str(mode), "diffs": diffs,
                                              "interp": a.describe(), "jit": b.describe()})
            continue
        text = case.text()
        stats["divergences"].append({
            "seed": seed, "index": index, "diffs": diffs, "interp": a.describe(), "jit": b.describe(),
            "mode": f"seams {mode}", "config": repr(case.config), "original": text, "minimized": text,
            "min_diffs": diffs, "data": f"# seam case, seed {seed} program {index}, {mode} differs in {diffs}\n"
                                        f"# interp: {a.describe()}\n# jit: {b.describe()}\n{text}\n"})
        return


# ------------------------------------------------------------------------------------------ driver
class Campaign:
    """Totals, progress lines and output files of one campaign."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out) if args.out else None
        self.t0 = time.time()
        self.programs = self.runs = self.slots = 0
        self.outcomes: Counter = Counter()
        self.known: Counter = Counter()
        self.gen_errors, self.nondet, self.divs = [], [], []
        if self.out:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log_file = (self.out / "log.txt").open("a")

    def log(self, line: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {line}"
        print(line, flush=True)
        if self.out:
            self.log_file.write(line + "\n")
            self.log_file.flush()

    def add(self, st: dict) -> None:
        self.programs += st["programs"]
        self.runs += st["runs"]
        self.slots += st["slots"]
        self.outcomes.update(st["outcomes"])
        self.known.update(st["known"])
        self.gen_errors += st["gen_errors"]
        self.nondet += st["nondeterministic"]
        for d in st["divergences"]:
            self.divs.append(d)
            self.write_divergence(d)
            self.log(f"DIVERGENCE program {d['index']} {d['mode']}: {', '.join(d['diffs'])} interp: {d['interp']} "
                     f"jit: {d['jit']}")
        for e in st["gen_errors"]:
            self.log(f"GENERATOR ERROR program {e['index']}: {e['error'].strip().splitlines()[-1]}")

    def add_crash(self, d: dict) -> None:
        self.programs += 1       # it ran (as far as it got)
        self.divs.append(d)
        self.write_divergence(d)
        self.log(f"CRASH program {d['index']}: {d['interp']}")

    def write_divergence(self, d: dict) -> None:
        if not self.out:
            return
        stem = self.out / f"div-{d['seed']}-{d['index']}"
        stem.with_suffix(".data").write_text(d["data"])
        stem.with_suffix(".txt").write_text(
            f"seed {d['seed']} program {d['index']}\nconfig {d['config']}\n{d['mode']} differs in {d['diffs']}\n"
            f"interp: {d['interp']}\njit:    {d['jit']}\nminimized differs in {d['min_diffs']}\n\n"
            f"-- minimized\n{d['minimized']}\n-- original\n{d['original']}")

    def progress(self) -> None:
        dt = time.time() - self.t0
        rate = self.programs / dt if dt else 0.0
        left = (self.args.programs - self.programs) / rate / 60 if rate else float("nan")
        faults = {k: v for k, v in sorted(self.outcomes.items()) if k != "ok"}
        self.log(f"{self.programs}/{self.args.programs} programs {self.runs} runs {rate:.1f} prog/s "
                 f"ETA {left:.1f} min | ok {self.outcomes['ok']} faults {faults} | divergences {len(self.divs)} "
                 f"known bugs {dict(self.known)} nondeterministic {len(self.nondet)} "
                 f"generator errors {len(self.gen_errors)}")

    def summary(self, stopped: str | None) -> dict:
        dt = time.time() - self.t0
        s = {"seed": self.args.seed, "programs": self.programs, "requested": self.args.programs,
             "runs": self.runs, "mean_slots": round(self.slots / max(1, self.programs), 1),
             "seconds": round(dt, 1), "jobs": self.args.jobs, "runs_per_program": self.args.runs,
             "size": self.args.size, "budget": self.args.budget, "loops": self.args.loops,
             "opt_levels": self.args.opt or OPT_LEVELS,
             "outcomes": dict(self.outcomes),
             "divergences": len(self.divs), "known_bugs": dict(self.known), "nondeterministic": len(self.nondet),
             "generator_errors": len(self.gen_errors), "stopped": stopped,
             "divergent_programs": [d["index"] for d in self.divs]}
        text = "\n".join([
            f"seed {s['seed']}: {s['programs']} programs ({s['requested']} requested), {s['runs']} runs, "
            f"{s['seconds'] / 60:.1f} min with {s['jobs']} jobs" + (f" (stopped: {stopped})" if stopped else ""),
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"divergences: {s['divergences']} new, known bugs {dict(self.known) or 'none'}; "
            f"nondeterministic (generator bugs): {s['nondeterministic']}, "
            f"generator errors: {s['generator_errors']}"] +
            [f"  program {d['index']} {d['mode']}: {', '.join(d['diffs'])}" for d in self.divs])
        if self.out:
            (self.out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
            (self.out / "summary.txt").write_text(text + "\n")
            if self.gen_errors or self.nondet:
                (self.out / "generator-problems.json").write_text(
                    json.dumps({"errors": self.gen_errors, "nondeterministic": self.nondet}, indent=1))
        self.log("summary:\n" + text)
        return s


STAGES = ("generating", "compiling or running", "checking a divergence")


def worker_loop(wid: int, tasks, results, where, recycle: int) -> None:
    """A worker process: runs tasks until it gets None or has done `recycle` tasks. where[2 * wid] is the
    program index it is on (-1 between tasks), where[2 * wid + 1] the stage (STAGES)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def mark(index, stage):
        where[2 * wid], where[2 * wid + 1] = index, stage
    for _ in range(recycle):
        task = tasks.get()
        if task is None:
            break
        mark(task[1], 0)
        st = work(task, mark)
        mark(-1, 0)
        results.put((task, st))
    results.put(("exit", wid))


class Workers:
    """Worker processes fed from one task queue. A worker that dies (a crash in native code: the JIT's
    machine code, LLVM, ctypes) is replaced; the program it was on is reported as a crash and the rest of
    its task is queued again."""

    def __init__(self, n: int, recycle: int):
        self.ctx = mp.get_context("fork")
        self.tasks, self.results = self.ctx.Queue(), self.ctx.Queue()
        self.where = self.ctx.Array("q", [-1, 0] * n, lock=False)
        self.recycle = recycle
        self.outstanding: dict = {}               # (start, count) -> task
        self.procs = [self.spawn(i) for i in range(n)]

    def spawn(self, wid: int):
        self.where[2 * wid] = -1
        p = self.ctx.Process(target=worker_loop, args=(wid, self.tasks, self.results, self.where, self.recycle),
                             daemon=True)
        p.start()
        return p

    def submit(self, task) -> None:
        if task[2] > 0:
            self.outstanding[task[1:3]] = task
            self.tasks.put(task)

    def next(self, timeout: float = 2.0):
        """("done", stats) | ("crash", record) | None (nothing yet)."""
        try:
            msg = self.results.get(timeout=timeout)
        except queue.Empty:
            return self.check()
        if msg[0] == "exit":                       # recycled: a fresh process takes its place
            self.procs[msg[1]].join()
            self.procs[msg[1]] = self.spawn(msg[1])
            return None
        self.outstanding.pop(msg[0][1:3], None)
        return ("done", msg[1])

    def check(self):
        for wid, p in enumerate(self.procs):
            if p.is_alive() or p.exitcode == 0:
                continue
            index, stage = self.where[2 * wid], self.where[2 * wid + 1]
            self.procs[wid] = self.spawn(wid)
            task = next((t for t in self.outstanding.values() if t[1] <= index < t[1] + t[2]), None)
            if task is None:
                return ("crash", {"index": index, "exitcode": p.exitcode, "stage": "outside a program"})
            del self.outstanding[task[1:3]]
            seed, start, count, opts = task
            self.submit((seed, start, index - start, opts))
            self.submit((seed, index + 1, start + count - index - 1, opts))
            return ("crash", {"seed": seed, "index": index, "exitcode": p.exitcode, "stage": STAGES[stage],
                              "opts": opts})
        return None

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()


def crash_record(rec: dict) -> dict:
    """A divergence record for a worker that died on a program (regenerated here, not run)."""
    if "opts" not in rec:
        return {**rec, "seed": "?", "diffs": ["crash"], "mode": "?", "interp": "?", "jit": "?", "config": "?",
                "original": "", "minimized": "", "min_diffs": ["crash"], "data": ""}
    case = generate(rec["seed"], rec["index"], rec["opts"])
    how = f"the worker died (exit code {rec['exitcode']}) while {rec['stage']}"
    header = [f"bpfjit differential fuzz: seed {rec['seed']} program {rec['index']}: {how}",
              "not minimized; re-run with: tests/fuzz_engines.py --seed S --index I (same --size/--runs/--opt)"]
    return {"seed": rec["seed"], "index": rec["index"], "diffs": ["crash"], "mode": "any", "interp": how,
            "jit": how, "config": repr(case.config), "original": disassemble(case.insns), "minimized": "",
            "min_diffs": ["crash"], "data": progen.to_data(case, progen.Mode(), header)}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def campaign(args) -> int:
    c = Campaign(args)
    opts = {"size": args.size, "budget": args.budget, "runs": args.runs, "loops": args.loops, "opt": args.opt,
            "seams": args.seams}
    end = args.start + args.programs
    tasks = [(args.seed, s, min(args.chunk, end - s), opts) for s in range(args.start, end, args.chunk)]
    c.log(f"campaign seed {args.seed}: {args.programs} programs from {args.start}, {args.jobs} jobs, "
          f"{args.runs} mems each, size {args.size}, budget {args.budget}, loops {args.loops}, "
          f"opt levels {args.opt or OPT_LEVELS}, seam fraction {args.seams}")
    stopped = None
    deadline = c.t0 + args.max_minutes * 60 if args.max_minutes else None
    signal.signal(signal.SIGTERM, _interrupt)     # `kill PID` stops the workers and writes the summary
    workers = Workers(args.jobs, args.recycle)
    for t in tasks:
        workers.submit(t)
    try:
        while workers.outstanding:
            got = workers.next()
            if got and got[0] == "done":
                c.add(got[1])
                c.progress()
            elif got:
                c.add_crash(crash_record(got[1]))
            if deadline and time.time() > deadline:
                stopped = f"time limit of {args.max_minutes} min"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    workers.stop()
    c.summary(stopped)
    return 1 if c.divs or c.gen_errors or c.nondet else 0


# ------------------------------------------------------------------------------------ single cases
def show(case: progen.Case, results) -> None:
    print(f"config {case.config}\nmem_len {case.mem_len} static bound {case.bound}\n")
    print(disassemble(case.insns))
    for run_case, mode, a, b, diffs in results:
        tag = "" if run_case is case else f", insn_limit {run_case.config.insn_limit}"
        print(f"{mode}{tag}\n  interp: {a.describe()}\n  jit:    {b.describe()}")
        print(f"DIFFERS in {diffs}\n" if diffs else "")


def replay(path: str) -> int:
    """Run a reproducer written by a campaign (raw program, `# config:` comment, mem) in both engines."""
    case, mode = progen.from_data(Path(path).read_text(), path)
    results = [(case, *r) for r in progen.run_case(case, only=[mode])]
    show(case, results)
    return 1 if any(r[-1] for r in results) else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--programs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="index of the first program")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", help="directory for log.txt, summary.json/txt and reproducers")
    p.add_argument("--runs", type=int, default=3, help="mem contents per program")
    p.add_argument("--size", type=int, default=8, help="statements in main (subprograms scale with it)")
    p.add_argument("--loops", type=float, default=0.25,
                   help="fraction of programs also run with run_batch and bench (a second JIT module)")
    p.add_argument("--opt", type=opt_weights, default=None,
                   help="JIT opt_level weights, e.g. 0:14,2:4 (default: OPT_LEVELS)")
    p.add_argument("--seams", type=float, default=0.2,
                   help="fraction of programs that are seam cases (maps, tail calls, kprobe ctx, Python helpers)")
    p.add_argument("--budget", type=int, default=3000, help="bound on executed instructions per run")
    p.add_argument("--chunk", type=int, default=50, help="programs per worker task")
    p.add_argument("--recycle", type=int, default=40, help="tasks per worker process before a fresh one")
    p.add_argument("--max-minutes", type=float, default=0, help="stop dispatching after this long (0: never)")
    p.add_argument("--index", type=int, help="show and run program INDEX of --seed only")
    p.add_argument("--replay", help="re-run a .data reproducer")
    args = p.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    if args.index is not None:
        case = generate(args.seed, args.index, {"size": args.size, "budget": args.budget, "runs": args.runs,
                                                "opt": args.opt})
        results = run_program(case, random.Random(f"{args.seed}:{args.index}:limit"))   # every mode
        show(case, results)
        return 1 if any(r[-1] for r in results) else 0
    return campaign(args)


if __name__ == "__main__":
    sys.exit(main())
