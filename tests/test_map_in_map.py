"""Map-in-map (array_of_maps, hash_of_maps) in both engines: the Python API and its inner-template check,
a program looking up an outer map and using the result as the map of further helpers (verified and checked
code alike), update/delete of an outer map refused (verifier) or -EINVAL (checked runs), the verifier's
null check of the lookup result, and the ELF fixture tests/elf/map_in_map.o loading and running."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from bpfjit import VM, Config
from bpfjit.elf import ObjectFile
from bpfjit.errors import VerifierError
from bpfjit.maps import ArrayMap, ArrayOfMapsMap, HashMap, HashOfMapsMap, InnerTemplate, MapError, create_map
from bpfjit.progtypes import pt_regs
from bpfjit.runtime import Runtime

FIX = Path(__file__).resolve().parent / "elf"
SAFETY = ("auto", "checked")


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def key(reg: str, off: int, k: int) -> str:
    return f"stw [%r10{off}], {k}\nmov {reg}, %r10\nadd {reg}, {off}\n"


# r0 = outer[okey] ? (inner[1] += 5, then the new inner[1]) : -1;  inner maps: hash u32 -> u64
LOOKUP_THROUGH = """
lddw %r1, map(outer)
{okey}
call map_lookup_elem
jne %r0, 0, +2
mov %r0, -1
exit
mov %r6, %r0
stw [%r10-8], 1
stdw [%r10-16], 0
mov %r1, %r6
mov %r2, %r10
add %r2, -8
call map_lookup_elem
jne %r0, 0, +11
mov %r1, %r6
mov %r2, %r10
add %r2, -8
mov %r3, %r10
add %r3, -16
mov %r4, 0
call map_update_elem
mov %r1, %r6
mov %r2, %r10
add %r2, -8
call map_lookup_elem
jne %r0, 0, +2
mov %r0, -2
exit
ldxdw %r1, [%r0]
add %r1, 5
stxdw [%r0], %r1
ldxdw %r0, [%r0]
exit
"""


def _runtime(outer_cls, safety):
    rt = Runtime(Config(safety=safety))
    a, b = (HashMap(4, 8, 8, name=n, value_type="<u8") for n in ("a", "b"))
    outer = outer_cls(4, 8, 4, inner=a, name="outer")
    outer[0], outer[2] = a, b
    for m in (outer, a, b):
        rt.add_map(m, m.name)
    return rt, outer, a, b


@pytest.mark.parametrize("outer_cls", [ArrayOfMapsMap, HashOfMapsMap])
@pytest.mark.parametrize("safety", SAFETY)
def test_program_uses_inner_map_through_outer(engine, outer_cls, safety):
    rt, outer, a, b = _runtime(outer_cls, safety)
    vms = {k: VM(rt.assemble(LOOKUP_THROUGH.format(okey=key("%r2", -4, k))), engine, rt.config, runtime=rt)
           for k in (0, 1, 2)}
    if safety == "auto":
        assert vms[0].safety == "verified"
    assert [s64(vms[k].run()) for k in (0, 1, 2, 2, 0, 2)] == [5, -1, 5, 10, 10, 15]
    assert (a[1], b[1]) == (10, 15)
    assert outer[0] is a and outer[2] is b


@pytest.mark.parametrize("op,body", [
    ("update", "stdw [%r10-16], 0\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\ncall map_update_elem\n"),
    ("delete", "call map_delete_elem\n")])
def test_program_may_not_change_outer_map(engine, op, body):
    rt, outer, a, b = _runtime(ArrayOfMapsMap, "checked")
    text = "lddw %r1, map(outer)\n" + key("%r2", -4, 0) + body + "exit\n"
    assert s64(VM(rt.assemble(text), engine, rt.config, runtime=rt).run()) == -errno.EINVAL
    assert outer[0] is a
    rt2, *_ = _runtime(ArrayOfMapsMap, "verified")
    with pytest.raises(VerifierError, match="cannot pass map_type array_of_maps into func bpf_map_"):
        VM(rt2.assemble(text), engine, rt2.config, runtime=rt2)


def test_verifier_requires_null_check_of_inner_map(engine):
    rt, *_ = _runtime(ArrayOfMapsMap, "verified")
    text = ("lddw %r1, map(outer)\n" + key("%r2", -4, 0) + "call map_lookup_elem\nmov %r1, %r0\n"
            + key("%r2", -8, 1) + "call map_lookup_elem\nmov %r0, 0\nexit\n")
    with pytest.raises(VerifierError, match="R1 type=map_ptr_or_null expected=map_ptr"):
        VM(rt.assemble(text), engine, rt.config, runtime=rt)


def test_python_api_and_template_check():
    inner = ArrayMap(4, 4, 4, name="t")
    outer = ArrayOfMapsMap(4, 4, 2, inner=inner, name="o", key_type="<u4")
    assert len(outer) == 0 and 0 not in outer and outer.get(1) is None
    outer.update(1, inner)
    assert outer[1] is inner and len(outer) == 1 and list(outer) == [1] and outer.items() == [(1, inner)]
    with pytest.raises(MapError, match=r"inner map <HashMap 'h'.*does not match the inner map template \(array"):
        outer[0] = HashMap(4, 4, 4, name="h")
    with pytest.raises(MapError, match="E2BIG"):
        outer[2] = inner
    with pytest.raises(TypeError, match="values are maps"):
        outer[0] = 5
    del outer[1]
    assert 1 not in outer and len(outer) == 0
    with pytest.raises(KeyError):
        del outer[1]
    h = HashOfMapsMap(8, 4, 4, inner=InnerTemplate("hash", 4, 8))
    m = HashMap(4, 8, 16)                         # max_entries may differ from the template
    h[7] = m
    with pytest.raises(MapError, match="EEXIST"):
        h.update(7, m, 1)
    assert h[7] is m and list(h) == [b"\x07" + bytes(7)]
    del h[7]
    assert len(h) == 0 and h.get(7) is None
    assert isinstance(create_map("BPF_MAP_TYPE_ARRAY_OF_MAPS", 4, 4, 3, inner=inner), ArrayOfMapsMap)
    with pytest.raises(ValueError, match="needs an inner map template"):
        ArrayOfMapsMap(4, 8, 2)


@pytest.mark.parametrize("safety", SAFETY)
def test_elf_map_in_map_loads_and_runs(engine, safety):
    obj = ObjectFile.open(FIX / "map_in_map.o")
    loaded = obj.load(config=Config(safety=safety))
    outer, ia, ib = (loaded.maps[n] for n in ("outer", "inner_a", "inner_b"))
    assert isinstance(outer, ArrayOfMapsMap) and outer[0] is ib and outer[1] is ia
    assert outer.inner == InnerTemplate("array", 4, 4, 4)
    ib[0] = 41
    probe = loaded.runtime.kprobe(loaded.programs["lookup_inner"], engine)
    assert probe.fire(pt_regs()) == 41
    outer[0] = ia                                  # now slot 0 points at inner_a
    ia[0] = 7
    assert probe.fire(pt_regs()) == 7
    del outer[0]
    assert probe.fire(pt_regs()) == 0
    assert loaded.runtime.kprobe(loaded.programs["use_inner_a"], engine).fire(pt_regs()) == 4
    assert ia[1] == 3
