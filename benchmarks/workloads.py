"""The benchmark workloads: each BPF program (programs/<name>.asm), the input it runs on and a Python
reference of its r0, plus the generated program used to time compilation of a medium-sized program.

Only data and pure-Python references live here. Timing lives in harness.py, the C baselines in
cbaseline.py and c/, the benchmarks themselves in test_bench_*.py. Inputs are seeded, so every run of the
suite measures the same bytes.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np

from bpfjit import Program

HERE = Path(__file__).resolve().parent
PROGRAMS_DIR = HERE / "programs"
C_DIR = HERE / "c"
M64 = (1 << 64) - 1

# ---- the filter's 64-byte event record (layout documented in programs/filter.asm) ----
RECORD = np.dtype([("pid", "<u4"), ("uid", "<u4"), ("ts", "<u8"), ("type", "<u2"), ("flags", "<u2"),
                   ("size", "<u4"), ("comm", "S16"), ("cgroup", "<u8"), ("cpu", "<u4"), ("pad", "V12")])
assert RECORD.itemsize == 64
BAD_CGROUP = 0xDEADBEEF00


def filter_ref(rec: bytes) -> int:
    if len(rec) < 64:
        return 0
    pid, uid, _ts, typ, flags, size = struct.unpack_from("<IIQHHI", rec, 0)
    cgroup, cpu = struct.unpack_from("<QI", rec, 40)
    return int(pid > 1 and uid != 0 and typ in (3, 7) and not flags & 0x4 and 128 <= size <= 65536
               and rec[24:28] == b"bash" and cgroup != BAD_CGROUP and cpu < 64)


def filter_records(n: int, seed: int = 1) -> np.ndarray:
    """n event records; each field passes the filter often, so about a third of the records are kept."""
    rng = np.random.default_rng(seed)
    recs = np.zeros(n, dtype=RECORD)
    recs["pid"] = rng.choice([0, 1, 42, 4242, 100000], n, p=[0.02, 0.02, 0.32, 0.32, 0.32])
    recs["uid"] = rng.choice([0, 1000, 1001], n, p=[0.05, 0.5, 0.45])
    recs["ts"] = rng.integers(0, 1 << 62, n, dtype=np.uint64)
    recs["type"] = rng.choice([1, 3, 7, 9], n, p=[0.05, 0.45, 0.45, 0.05])
    recs["flags"] = rng.choice([0, 1, 4, 5, 8], n, p=[0.4, 0.3, 0.05, 0.05, 0.2])
    recs["size"] = rng.choice([64, 128, 4096, 65536, 70000], n, p=[0.05, 0.3, 0.3, 0.3, 0.05])
    recs["comm"] = rng.choice(np.array([b"bash", b"bashful", b"zsh", b"python3"]), n, p=[0.6, 0.2, 0.1, 0.1])
    recs["cgroup"] = rng.choice(np.array([1, 77, BAD_CGROUP], dtype=np.uint64), n, p=[0.45, 0.45, 0.1])
    recs["cpu"] = rng.choice([0, 3, 63, 64], n, p=[0.3, 0.3, 0.35, 0.05])
    return recs


def filter_mem() -> np.ndarray:
    """One record that passes every test (the longest path through the filter)."""
    rec = np.zeros(1, dtype=RECORD)
    rec[0] = (4242, 1000, 123456789, 7, 0x1, 4096, b"bash", 77, 3, b"\0" * 12)
    return rec.view(np.uint8).copy()


# ---- the other workloads ----
def random_bytes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


def log2_mem() -> np.ndarray:
    """127 u64 values with bit lengths spread over 0..64, so every branch of the search is taken."""
    rng = random.Random(5)
    vals = [rng.getrandbits(rng.randint(0, 64)) for _ in range(127)]
    return np.array(vals, dtype=np.uint64).view(np.uint8).copy()


def bytesum_ref(mem: bytes) -> int:
    return sum(mem)


def fnv1a_ref(mem: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in mem:
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def primes_ref(_mem) -> int:
    return sum(all(n % d for d in range(2, int(n ** 0.5) + 1)) for n in range(2, 10000))


def log2_ref(mem: bytes) -> int:
    return sum(max(v.bit_length() - 1, 0) for v in struct.unpack(f"<{len(mem) // 8}Q", mem))


@dataclass(frozen=True)
class Workload:
    name: str
    make_mem: Callable[[], np.ndarray | None]     # a fresh input (None: the program takes no mem)
    reference: Callable[[bytes], int]             # expected r0 for that input

    def program(self) -> Program:
        return load_program(self.name)

    def expected(self) -> int:
        return expected_r0(self.name)


WORKLOADS = {w.name: w for w in (
    Workload("filter", filter_mem, filter_ref),
    Workload("bytesum", lambda: random_bytes(1024, 2), bytesum_ref),
    Workload("fnv1a", lambda: random_bytes(1024, 3), fnv1a_ref),
    Workload("primes", lambda: None, primes_ref),
    Workload("log2", log2_mem, log2_ref),
)}
NAMES = tuple(WORKLOADS)


@cache
def load_program(name: str) -> Program:
    path = PROGRAMS_DIR / f"{name}.asm"
    return Program.from_asm(path.read_text(), name=name)


@cache
def expected_r0(name: str) -> int:
    mem = WORKLOADS[name].make_mem()
    return WORKLOADS[name].reference(b"" if mem is None else mem.tobytes())


# ---- a generated medium-sized program (compile-time benchmark) ----
_GEN_ALU = ("add", "sub", "xor", "or", "and", "mul", "lsh", "rsh", "arsh", "mov")
_GEN_JMP = ("jeq", "jne", "jgt", "jge", "jlt", "jsgt", "jset")


def generated_asm(n_slots: int = 100, seed: int = 7) -> str:
    """Straight-line ALU code over r0..r5 with a forward conditional jump every few instructions.

    Exactly n_slots instructions; every jump lands inside the program; the last instruction is exit.
    """
    rng = random.Random(seed)
    lines = [f"mov %r{r}, {rng.randint(1, 1 << 20)}" for r in range(6)]
    while len(lines) < n_slots - 2:
        pc = len(lines)
        if pc % 5 == 4:
            op = rng.choice(_GEN_JMP)
            span = rng.randint(0, min(12, n_slots - 3 - pc))
            lines.append(f"{op} %r{rng.randint(0, 5)}, {rng.randint(0, 255)}, +{span}")
            continue
        op = rng.choice(_GEN_ALU) + rng.choice(("", "32"))
        dst = rng.randint(0, 5)
        imm = rng.randint(0, 31) if op.removesuffix("32") in ("lsh", "rsh", "arsh") else rng.randint(-1000, 1000)
        src = f"%r{rng.randint(0, 5)}" if rng.random() < 0.5 else str(imm)
        lines.append(f"{op} %r{dst}, {src}")
    lines += ["add %r0, %r1", "exit"]
    return "\n".join(lines) + "\n"


@cache
def generated_program(n_slots: int = 100) -> Program:
    prog = Program.from_asm(generated_asm(n_slots), name=f"generated{n_slots}")
    assert len(prog) == n_slots
    return prog
