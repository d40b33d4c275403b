"""Cost of map operations (bpfjit.maps).

From JIT code (`VM.bench(None, n)`, figures per execution of the program, checked and unchecked modes):
group `map_lookup`: the same program with no call (the floor), array lookup (inlined fast path; target
<= 3 ns over the floor), hash lookup (target <= 30 ns), per-cpu array and LRU hash lookups; group
`map_update`: array and hash updates of an existing key, ringbuf_output of 8 bytes (the ring is cleared
between rounds); group `tail_call`: program A whose tail call falls through (empty slot) against A tail-calling B,
which exits (one hop: target <= 10 ns over A alone). From Python (group `map_python`): `m[key]` and
`m[key] = value` on array and hash maps.
"""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import VM, Config
from bpfjit.helpers import default_registry
from bpfjit.helpers.map_helpers import register_map_helpers
from bpfjit.maps import ArrayMap, HashMap, LruHashMap, PercpuArrayMap, ProgArrayMap, RingBufMap
from bpfjit.runtime import Runtime
from harness import time_calls, time_repeats

ROUNDS = 20
PY_ROUNDS, PY_ITERATIONS = 20, 2000
HASH_KEYS = 1000
MODES = {"checked": Config(), "unchecked": Config(checked=False)}


def make_runtime(mode: str) -> Runtime:
    rt = Runtime(MODES[mode], helpers=register_map_helpers(default_registry().copy()))
    maps = {"arr": ArrayMap(4, 8, 256, value_type=np.uint64),
            "hash": HashMap(4, 8, 2 * HASH_KEYS, value_type=np.uint64),
            "pcpu": PercpuArrayMap(4, 8, 256, value_type=np.uint64),
            "lru": LruHashMap(4, 8, 2 * HASH_KEYS, value_type=np.uint64),
            "rb": RingBufMap(1 << 20)}
    for name, m in maps.items():
        rt.add_map(m, name=name)
    for k in range(HASH_KEYS):
        maps["hash"][k] = k
        maps["lru"][k] = k
    return rt


KEY = "stw [%r10-4], 77\nmov %r2, %r10\nadd %r2, -4\n"
VALUE = "stdw [%r10-16], 5\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\n"
LOOKUP_CASES = {   # id: (program, expected last r0 != 0)
    "no_call": ("lddw %r1, map(arr)\n" + KEY + "mov %r0, 1\nexit\n", True),
    "array": ("lddw %r1, map(arr)\n" + KEY + "call map_lookup_elem\nexit\n", True),
    "hash": ("lddw %r1, map(hash)\n" + KEY + "call map_lookup_elem\nexit\n", True),
    "hash_miss": ("lddw %r1, map(hash)\nstw [%r10-4], 5000\nmov %r2, %r10\nadd %r2, -4\n"
                  "call map_lookup_elem\nexit\n", False),
    "percpu_array": ("lddw %r1, map(pcpu)\n" + KEY + "call map_lookup_elem\nexit\n", True),
    "lru_hash": ("lddw %r1, map(lru)\n" + KEY + "call map_lookup_elem\nexit\n", True),
}
UPDATE_CASES = {
    "array": "lddw %r1, map(arr)\n" + KEY + VALUE + "call map_update_elem\nexit\n",
    "hash": "lddw %r1, map(hash)\n" + KEY + VALUE + "call map_update_elem\nexit\n",
    "ringbuf_output": "lddw %r1, map(rb)\nstdw [%r10-8], 1\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\n"
                      "mov %r4, 0\ncall ringbuf_output\nexit\n",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", LOOKUP_CASES)
def test_lookup_from_jit(benchmark, case, mode):
    benchmark.group = f"map_lookup:{mode}"
    rt = make_runtime(mode)
    text, found = LOOKUP_CASES[case]
    vm = VM(rt.assemble(text), "jit", rt.config, runtime=rt)
    r0 = time_repeats(benchmark, lambda n: vm.bench(None, n), rounds=ROUNDS, kind="map_lookup", program=case,
                      engine="jit", mode=mode)
    assert (r0 != 0) == found


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", UPDATE_CASES)
def test_update_from_jit(benchmark, case, mode):
    benchmark.group = f"map_update:{mode}"
    rt = make_runtime(mode)
    vm = VM(rt.assemble(UPDATE_CASES[case]), "jit", rt.config, runtime=rt)
    rb = rt.map("rb")

    def call(n):
        rb.clear()                   # room for every record of the round
        return vm.bench(None, n)
    r0 = time_repeats(benchmark, call, rounds=ROUNDS, n=50_000, kind="map_update", program=case, engine="jit",
                      mode=mode)
    assert r0 == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["alone", "one_hop"])
def test_tail_call(benchmark, case, mode):
    benchmark.group = f"tail_call:{mode}"
    rt = make_runtime(mode)
    pa = ProgArrayMap(2, rt)
    rt.add_map(pa, name="jmp")
    pa[1] = rt.assemble("mov %r0, 7\nexit\n")
    slot = 1 if case == "one_hop" else 0
    vm = VM(rt.assemble(f"lddw %r2, map(jmp)\nmov %r3, {slot}\ncall tail_call\nexit\n"), "jit", rt.config,
            runtime=rt)
    r0 = time_repeats(benchmark, lambda n: vm.bench(None, n), rounds=ROUNDS, kind="tail_call", program=case,
                      engine="jit", mode=mode)
    assert r0 == (7 if case == "one_hop" else (1 << 64) - 2)


PY_CASES = {
    "array_get": lambda m, h: m[77],
    "array_set": lambda m, h: m.__setitem__(77, 5),
    "hash_get": lambda m, h: h[77],
    "hash_set": lambda m, h: h.__setitem__(77, 5),
}


@pytest.mark.parametrize("case", PY_CASES)
def test_python_access(benchmark, case):
    benchmark.group = "map_python"
    rt = make_runtime("checked")
    m, h = rt.map("arr"), rt.map("hash")
    op = PY_CASES[case]
    time_calls(benchmark, lambda: op(m, h), rounds=PY_ROUNDS, iterations=PY_ITERATIONS, kind="map_python",
               program=case, engine="python")
    assert h[77] in (77, 5)
