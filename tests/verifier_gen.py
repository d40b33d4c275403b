"""Random programs aimed at the verifier's edges, for the differential test of tests/test_verifier.py:
loads and stores near the end of a raw memory of `mem_size` bytes, indexes bounded by masks or by
comparisons (sometimes one too loosely), stack slots read with or without an earlier write, forward
branches and small counted loops. About half are refused; every accepted one must run without faults.

`generate(rnd)` -> (assembly text, mem_size). Only generation lives here.
"""
from __future__ import annotations

import random

SIZES = (8, 16, 32, 64)
DATA = (0, 2, 3, 4, 5, 6, 7)          # scalar registers; r8 is the loop counter, r9 a scratch pointer
LD = ("ldxb", "ldxh", "ldxw", "ldxdw")
WIDTH = {"ldxb": 1, "ldxh": 2, "ldxw": 4, "ldxdw": 8, "stxb": 1, "stxh": 2, "stxw": 4, "stxdw": 8}


class _Gen:
    def __init__(self, rnd: random.Random):
        self.r = rnd
        self.n = rnd.choice(SIZES)

    def reg(self) -> str:
        return f"%r{self.r.choice(DATA)}"

    def near(self, width: int) -> int:
        """An offset whose access of `width` bytes is in bounds, or (rarely) just out of them."""
        r = self.r
        if r.random() < 0.15:
            return r.choice((self.n - width + 1, self.n, -1))
        return r.randint(0, max(0, self.n - width))

    def stmt(self, depth: int, in_loop: bool) -> list[str]:
        r = self.r
        k = r.randrange(10)
        if k < 3:
            op = r.choice(("add", "sub", "and", "or", "xor", "mul", "lsh", "rsh", "mod", "div"))
            src = str(r.randint(0, 7) if op in ("lsh", "rsh") else r.randint(-20, 300)) \
                if r.random() < 0.6 else self.reg()
            return [f"{op}{r.choice(('', '32'))} {self.reg()}, {src}"]
        if k == 3:
            ld = r.choice(LD)
            return [f"{ld} {self.reg()}, [%r1{self.near(WIDTH[ld]):+d}]"]
        if k == 4:
            st = r.choice(("stxb", "stxh", "stxw", "stxdw"))
            return [f"{st} [%r1{self.near(WIDTH[st]):+d}], {self.reg()}"]
        if k == 5:                                     # masked index
            mask = r.choice((1, 3, 7, 15, 31, 63))
            idx = self.reg()
            ld = r.choice(LD)
            return [f"mov %r9, {idx}", f"and %r9, {mask}", "add %r9, %r1",
                    f"{ld} {self.reg()}, [%r9{self.near(WIDTH[ld]) - mask if r.random() < 0.5 else 0:+d}]"]
        if k == 6:                                     # index bounded by a comparison
            idx = self.reg()
            c = r.randint(0, self.n)
            ld = r.choice(LD)
            return [f"jgt {idx}, {c}, +3", "mov %r9, %r1", f"add %r9, {idx}",
                    f"{ld} {self.reg()}, [%r9{r.choice((0, 0, self.n - c - WIDTH[ld], 1)):+d}]"]
        if k == 7:                                     # stack
            j = r.randint(1, 6)
            if r.random() < 0.5:
                return [f"stxdw [%r10-{8 * j}], {self.reg()}"]
            return [f"ldxdw {self.reg()}, [%r10-{8 * j}]"]
        if k == 8 and depth < 2:                       # forward branch over a block
            body = self.block(depth + 1, in_loop, r.randint(1, 3))
            op = r.choice(("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jslt", "jset"))
            return [f"{op} {self.reg()}, {r.randint(-3, 40)}, +{len(body)}"] + body
        if k == 9 and depth < 1 and not in_loop:       # counted loop
            body = self.block(depth + 1, True, r.randint(1, 3))
            return ["mov %r8, 0"] + body + ["add %r8, 1", f"jlt %r8, {r.randint(1, 6)}, -{len(body) + 2}"]
        return [f"mov {self.reg()}, {r.randint(-5, 100)}"]

    def block(self, depth: int, in_loop: bool, n: int) -> list[str]:
        out = []
        for _ in range(n):
            out += self.stmt(depth, in_loop)
        return out

    def program(self) -> str:
        r = self.r
        lines = [f"mov %r{x}, {r.randint(0, 9)}" for x in DATA] + ["ldxb %r3, [%r1+0]"]
        lines += self.block(0, False, r.randint(3, 14))
        lines += [f"mov %r0, {self.reg()}", "exit"]
        return "\n".join(lines) + "\n"


def generate(rnd: random.Random) -> tuple[str, int]:
    g = _Gen(rnd)
    return g.program(), g.n
