"""ELF object loading: `ObjectFile.open` (parse, classify relocations, link) and `load` (maps, relocation,
Program validation, load-time checks) of a generated 40,000-instruction object (10 kprobe programs with an
lddw map reference every 40 slots and a call to a shared .text subprogram; tests/elf/elfgen.py), and of a
small clang-built fixture. Groups `elf:open`, `elf:load`. The issue's budget: open <= 100 ms at 40,000
instructions.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bpfjit import ObjectFile
from bpfjit.runtime import Runtime
from harness import time_calls

FIX = Path(__file__).resolve().parents[1] / "tests" / "elf"
sys.path.insert(0, str(FIX))
from elfgen import large_object  # noqa: E402

SIZES = (4_000, 40_000)


@pytest.fixture(scope="module")
def objects():
    return {n: large_object(n) for n in SIZES}


@pytest.mark.parametrize("n", SIZES)
def test_open(benchmark, objects, n):
    benchmark.group = "elf:open"
    obj = time_calls(benchmark, lambda: ObjectFile.open(objects[n]), rounds=10, iterations=1, kind="elf_open",
                     program=f"generated{n}", insns=n)
    assert sum(len(p) for p in obj.programs.values()) >= n


@pytest.mark.parametrize("n", SIZES)
def test_load(benchmark, objects, n):
    benchmark.group = "elf:load"
    obj = ObjectFile.open(objects[n])
    loaded = time_calls(benchmark, lambda: obj.load(runtime=Runtime(kern_version=0)), rounds=5, iterations=1,
                        kind="elf_load", program=f"generated{n}", insns=n)
    assert len(loaded.programs) == 10


def test_open_and_load_fixture(benchmark):
    benchmark.group = "elf:fixture"
    data = (FIX / "struct_values.o").read_bytes()
    loaded = time_calls(benchmark, lambda: ObjectFile.open(data).load(), rounds=20, iterations=1,
                        kind="elf_fixture", program="struct_values.o")
    assert set(loaded.maps) == {"flows", "totals"}
