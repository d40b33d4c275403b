"""The data-driven verifier cases (tests/verifier/*.txt, one file per rule group, like the kernel's
selftests) and the runtime their programs use.

File format: cases separated by lines `=== NAME`; an optional `options:` line (`mem_size=N`,
`prog_type=T`, `license=L`, `kern_version=N`, `allow_loops=0`); assembly; one expectation line:
`>>> accept` or `>>> reject PC: MESSAGE` (PC a number or `-`; MESSAGE a substring of the refusal).
Programs may name the maps of `case_runtime()`: hash8 (8-byte key and value), arr48 (array, 48-byte values),
arr8 (array, 8-byte values), rb (ringbuf), jmp (prog_array), q (queue of 8-byte values), events
(perf_event_array), ro8 (frozen array of one 8-byte value, like .rodata). `prog_type` may also name one of `TEST_PROG_TYPES`: packet program types built here from
the UAPI layouts of progtypes.py (the verifier reads only `ProgType.fields`), verified but not run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bpfjit.helpers.registry import Helper
from bpfjit.maps import ArrayMap, HashMap, PerfEventArrayMap, ProgArrayMap, QueueMap, RingBufMap
from bpfjit.progtypes import SK_BUFF_LAYOUT, SK_BUFF_SIZE, XDP_MD_LAYOUT, XDP_MD_SIZE, CtxField, ProgType
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


def _ptype(name: str, layout, size: int, readable, writable, ret_range=None) -> ProgType:
    """A packet program type (named as the kernel's) from a UAPI layout: the fields named in `readable` (all
    when None) may be read, those in `writable` written ("data"/"data_meta" writable: the program may store
    into the packet); ret_range: the kernel's check_return_code range."""
    fields = tuple(CtxField(n, off, sz, read=True, write=n in writable, kind=kind)
                   for n, off, sz, kind in layout if readable is None or n in readable)
    return ProgType(name, "test context", size, None, ctx_readonly=False, r2_is_len=False,
                    needs_kern_version=False, helpers=None, returns="verdict", fields=fields, ret_range=ret_range)


_SKB_COMMON = {n for n, *_ in SK_BUFF_LAYOUT} - {"data", "data_end", "data_meta", "flow_keys", "sk",
                                                "tstamp_type"}
# The kernel's access rules of each type, reduced to the field tables the verifier reads.
TEST_PROG_TYPES = {
    "test_xdp": _ptype("xdp", XDP_MD_LAYOUT, XDP_MD_SIZE, None, {"data", "data_meta"}),
    "test_tc": _ptype("sched_cls", SK_BUFF_LAYOUT, SK_BUFF_SIZE, _SKB_COMMON | {"data", "data_end", "data_meta"},
                      {"data", "data_meta", "mark", "priority", "tc_index", "cb", "tc_classid", "queue_mapping",
                       "tstamp"}),
    "test_cgroup_skb": _ptype("cgroup_skb", SK_BUFF_LAYOUT, SK_BUFF_SIZE, _SKB_COMMON | {"data", "data_end"},
                              {"mark", "priority", "cb"}, ret_range=(0, 1)),
    "test_socket_filter": _ptype("socket_filter", SK_BUFF_LAYOUT, SK_BUFF_SIZE, _SKB_COMMON, {"cb"}),
    # a tracepoint's record: read-only, any aligned read inside the kernel's PERF_MAX_TRACE_SIZE
    "test_tracepoint": ProgType("tracepoint", "tracepoint record (test)", 2048, None, ctx_readonly=True,
                                r2_is_len=False, needs_kern_version=False, helpers=None, returns="0/1"),
}
# libbpf's program type of an ELF section -> the test row that verifies it while bpfjit has no row of its own
TEST_ROW_OF = {"xdp": "test_xdp", "sched_cls": "test_tc", "sched_act": "test_tc", "cgroup_skb": "test_cgroup_skb",
               "socket_filter": "test_socket_filter", "tracepoint": "test_tracepoint"}


def case_runtime() -> Runtime:
    rt = Runtime()
    rt.add_map(HashMap(8, 8, 16), "hash8")
    rt.add_map(ArrayMap(4, 48, 4), "arr48")
    rt.add_map(ArrayMap(4, 8, 4), "arr8")
    rt.add_map(RingBufMap(4096), "rb")
    rt.add_map(ProgArrayMap(4, rt), "jmp")
    rt.add_map(QueueMap(8, 8), "q")
    rt.add_map(PerfEventArrayMap(1), "events")
    ro = ArrayMap(4, 8, 1)
    ro.freeze()
    rt.add_map(ro, "ro8")
    if rt.helpers.get(44) is None:      # the kernel's xdp_adjust_head prototype (moves the packet)
        rt.helpers.register(Helper(44, "xdp_adjust_head", lambda ctx, *a: -1, ("ptr_to_ctx", "anything")))
    return rt


def build(case: Case, rt: Runtime):
    """(program, verify keyword arguments) of a case."""
    o = case.options
    ptype = o.get("prog_type", "raw")
    test_type = TEST_PROG_TYPES.get(ptype)
    meta = dict(prog_type="raw" if test_type else ptype, license=o.get("license", "GPL"))
    if ptype == "kprobe":
        meta["kern_version"] = int(o["kern_version"], 0) if "kern_version" in o else rt.kern_version
    prog = rt.assemble(case.source, **meta)
    kw = {}
    if test_type is not None:
        kw["prog_type"] = test_type
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
