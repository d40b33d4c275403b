"""Generated programs of a given size for the compile-time curve (benchmarks/test_bench_compile.py and
benchmarks/compile_curve.py): straight-line ALU, memory through r1 (checked loads/stores into a 256-byte
mem), stack-heavy (r10-relative), and branchy (a forward conditional jump every few instructions).
Only program text lives here; every program terminates and runs without a fault on MEM_SIZE bytes.
"""
from __future__ import annotations

import random

from bpfjit import Program

KINDS = ("alu", "mem", "stack", "branchy")
SIZES = (100, 1_000, 10_000, 40_000)
MEM_SIZE = 256
_ALU = ("add", "sub", "mul", "xor", "or", "and", "lsh", "rsh", "arsh", "add32", "xor32", "mov")


def _alu(rng: random.Random) -> str:
    op = rng.choice(_ALU)
    d = rng.randint(2, 9)
    if rng.random() < 0.5:
        return f"{op} %r{d}, %r{rng.randint(2, 9)}"
    return f"{op} %r{d}, {rng.randint(0, 63)}"


def _body(kind: str, rng: random.Random, i: int, n: int) -> list[str]:
    if kind == "alu":
        return [_alu(rng)]
    if kind == "mem":
        w = rng.choice(("b", "h", "w", "dw"))
        size = {"b": 1, "h": 2, "w": 4, "dw": 8}[w]
        off = rng.randrange(0, MEM_SIZE - size + 1)
        if rng.random() < 0.5:
            return [f"stx{w} [%r1+{off}], %r{rng.randint(2, 9)}"]
        return [f"ldx{w} %r{rng.randint(2, 9)}, [%r1+{off}]"]
    if kind == "stack":
        w = rng.choice(("b", "h", "w", "dw"))
        size = {"b": 1, "h": 2, "w": 4, "dw": 8}[w]
        off = -rng.randrange(size, 513) // size * size
        if rng.random() < 0.5:
            return [f"stx{w} [%r10{off}], %r{rng.randint(2, 9)}"]
        return [f"ldx{w} %r{rng.randint(2, 9)}, [%r10{off}]"]
    if kind == "branchy":
        if i % 4 == 3 and i + 6 < n:
            cond = rng.choice(("jeq", "jne", "jgt", "jsgt", "jset", "jlt"))
            return [f"{cond} %r{rng.randint(2, 9)}, {rng.randint(0, 40)}, +{rng.randint(0, 4)}"]
        return [_alu(rng)]
    raise ValueError(kind)


def source(kind: str, n: int, seed: int = 1) -> str:
    """Assembly of about n instructions of the given kind (initialises r2..r9 and ends with exit)."""
    rng = random.Random(seed)
    lines = [f"mov %r{r}, {r * 7 + 1}" for r in range(2, 10)]
    if kind == "stack":       # the stack is read before it is written: zero it first in 512 bytes
        lines += [f"stxdw [%r10-{o}], %r2" for o in range(8, 513, 8)]
    while len(lines) < n - 2:
        lines += _body(kind, rng, len(lines), n)
    lines += ["mov %r0, %r2", "exit"]
    return "\n".join(lines)


def program(kind: str, n: int, seed: int = 1) -> Program:
    return Program.from_asm(source(kind, n, seed))
