"""The data-driven verifier cases (tests/verifier/*.txt, one file per rule group, like the kernel's
selftests) and the runtime their programs use.

File format: cases separated by lines `=== NAME`; an optional `options:` line (`mem_size=N`,
`prog_type=T`, `license=L`, `kern_version=N`, `allow_loops=0`); assembly; one expectation line:
`>>> accept` or `>>> reject PC: MESSAGE` (PC a number or `-`; MESSAGE a substring of the refusal).
Programs may name the maps of `case_runtime()`: hash8 (8-byte key and value), arr48 (array, 48-byte values),
arr8 (array, 8-byte values), rb (ringbuf), jmp (prog_array), q (queue of 8-byte values), events
(perf_event_array).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bpfjit.maps import ArrayMap, HashMap, PerfEventArrayMap, ProgArrayMap, QueueMap, RingBufMap
from bpfjit.runtime import Runtime

CASE_DIR = Path(__file__).parent / "verifier"
_EXPECT = re.compile(r">>>\s*(accept|reject\s+(-|\d+)\s*:\s*(.*))\s*$")


@dataclass
class Case:
    file: str
    name: str
    source: str
    options: dict = field(default_factory=dict)
    accept: bool = True
    pc: int | None = None
    message: str = ""

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def load_cases(directory: Path = CASE_DIR) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.txt")):
        cur = None
        for line in path.read_text().splitlines():
            if line.startswith("==="):
                cur = Case(path.stem, line[3:].strip(), "")
                cases.append(cur)
                continue
            if cur is None or not line.strip() or line.lstrip().startswith("//"):
                continue
            if line.startswith("options:"):
                for kv in line[8:].split():
                    k, v = kv.split("=", 1)
                    cur.options[k] = v
                continue
            m = _EXPECT.match(line.strip())
            if m:
                cur.accept = m[1] == "accept"
                if not cur.accept:
                    cur.pc = None if m[2] == "-" else int(m[2])
                    cur.message = m[3].strip()
                continue
            cur.source += line + "\n"
    return cases


def case_runtime() -> Runtime:
    rt = Runtime()
    rt.add_map(HashMap(8, 8, 16), "hash8")
    rt.add_map(ArrayMap(4, 48, 4), "arr48")
    rt.add_map(ArrayMap(4, 8, 4), "arr8")
    rt.add_map(RingBufMap(4096), "rb")
    rt.add_map(ProgArrayMap(4, rt), "jmp")
    rt.add_map(QueueMap(8, 8), "q")
    rt.add_map(PerfEventArrayMap(1), "events")
    return rt


def build(case: Case, rt: Runtime):
    """(program, verify keyword arguments) of a case."""
    o = case.options
    ptype = o.get("prog_type", "raw")
    meta = dict(prog_type=ptype, license=o.get("license", "GPL"))
    if ptype == "kprobe":
        meta["kern_version"] = int(o["kern_version"], 0) if "kern_version" in o else rt.kern_version
    prog = rt.assemble(case.source, **meta)
    kw = {}
    if "mem_size" in o:
        kw["mem_size"] = int(o["mem_size"])
    if "allow_loops" in o:
        kw["allow_loops"] = o["allow_loops"] not in ("0", "false", "no")
    return prog, kw


def random_input(case_or_size, rng: np.random.Generator, ptype: str = "raw"):
    """A random input for a run: mem of at least mem_size bytes, or a pt_regs for kprobe programs."""
    if ptype == "kprobe":
        from bpfjit.progtypes import PT_REGS
        return rng.integers(0, 256, PT_REGS.itemsize, dtype=np.uint8).view(PT_REGS)
    n = int(case_or_size) + int(rng.integers(0, 8))
    return rng.integers(0, 256, n, dtype=np.uint8)
