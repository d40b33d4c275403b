"""The helper registry (bpfjit.helpers): registration rules, prototypes, the default registry, and how
VM creation resolves `call N` / `call btf N` against the registry it is given (in both engines).

Running helpers (memory access through ctx.aspace, faults) is tested in test_semantics.py.
"""
from __future__ import annotations

import pytest

from bpfjit import VM, LoadError, Program
from bpfjit.helpers import Helper, HelperRegistry, default_registry, helper_ids


def _const(value):
    return lambda ctx, r1=0, r2=0, r3=0, r4=0, r5=0: value


# ------------------------------------------------------------------------------------ registration
def test_duplicate_id_rejected():
    reg = HelperRegistry([Helper(100, "first", _const(1))])
    with pytest.raises(ValueError, match="100"):
        reg.register(Helper(100, "second", _const(2)))
    assert reg.get(100).name == "first"


def test_replace_true_overrides():
    reg = HelperRegistry([Helper(100, "first", _const(1))])
    version = reg.version
    reg.register(Helper(100, "second", _const(2)), replace=True)
    assert reg.get(100).name == "second"
    assert reg.by_name("first") is None
    assert reg.version > version


def test_duplicate_ids_in_constructor_rejected():
    with pytest.raises(ValueError):
        HelperRegistry([Helper(7, "a", _const(1)), Helper(7, "b", _const(2))])


def test_decorator_registration():
    reg = HelperRegistry()

    @reg.helper(101, args=("ptr_to_mem", "const_size"))
    def checksum(ctx, r1, r2, r3, r4, r5):
        return 0

    h = reg.get(101)
    assert (h.id, h.name, h.py, h.args, h.ret) == (101, "checksum", checksum, ("ptr_to_mem", "const_size"),
                                                  "integer")
    assert 101 in reg and reg.names() == {"checksum": 101}


def test_decorator_with_name_and_btf_id():
    reg = HelperRegistry()

    @reg.helper(102, name="renamed", btf_id=9000)
    def fn(ctx, r1, r2, r3, r4, r5):
        return 0

    assert reg.get(102).name == "renamed"
    assert reg.get_btf(9000) is reg.get(102)
    assert reg.get_btf(9001) is None


def test_iteration_is_sorted_by_id_and_copy_is_independent():
    reg = HelperRegistry([Helper(30, "c", _const(0)), Helper(10, "a", _const(0)), Helper(20, "b", _const(0))])
    assert [h.id for h in reg] == [10, 20, 30]
    dup = reg.copy()
    dup.register(Helper(40, "d", _const(0)))
    assert 40 in dup and 40 not in reg


@pytest.mark.parametrize("kw", [
    dict(args=("not_a_type",)),
    dict(ret="pointer"),
    dict(args=("anything",) * 6),
], ids=["bad-arg", "bad-ret", "six-args"])
def test_prototypes_validated(kw):
    with pytest.raises(ValueError):
        Helper(103, "bad", _const(0), **kw)


@pytest.mark.parametrize("hid", [-1, 1 << 31, 1 << 40])
def test_helper_id_must_fit_a_call_immediate(hid):
    with pytest.raises(ValueError):
        Helper(hid, "far", _const(0))


def test_valid_prototype():
    h = Helper(104, "ok", _const(0), ("ptr_to_map_value", "ptr_to_stack", "const_size_or_zero"), "void",
               gpl_only=True)
    assert h.args[1] == "ptr_to_stack" and h.gpl_only


def test_decorator_validates_prototype():
    reg = HelperRegistry()
    with pytest.raises(ValueError):
        reg.helper(105, args=("bogus",))(_const(0))
    assert 105 not in reg


# ------------------------------------------------------------------------------ default registry
def test_default_registry_has_ktime_get_ns():
    assert helper_ids()["ktime_get_ns"] == 5
    h = default_registry().get(5)
    assert h.name == "ktime_get_ns" and h.args == () and h.ret == "integer"
    assert default_registry() is default_registry()


def test_ktime_get_ns_is_monotonic():
    h = default_registry().get(5)
    a, b = h.py(None), h.py(None)
    assert 0 < a <= b


# ------------------------------------------------------------------------ resolution at VM creation
def test_unknown_helper_rejected_at_vm_creation(engine):
    prog = Program.from_asm("mov %r0, 0\ncall 999\nexit")
    with pytest.raises(LoadError) as ei:
        VM(prog, engine)
    assert (ei.value.pc, ei.value.field) == (1, "imm")


def test_helper_missing_from_custom_registry(engine):
    prog = Program.from_asm("call 5\nexit")
    with pytest.raises(LoadError) as ei:
        VM(prog, engine, helpers=HelperRegistry([Helper(100, "other", _const(1))]))
    assert ei.value.pc == 0


def test_unknown_btf_helper_rejected(engine):
    prog = Program.from_asm("mov %r0, 0\nmov %r1, 0\ncall btf 4242\nexit")
    with pytest.raises(LoadError) as ei:
        VM(prog, engine)
    assert (ei.value.pc, ei.value.field) == (2, "imm")


def test_btf_helper_is_called(engine):
    reg = HelperRegistry([Helper(120, "answer", _const(42), btf_id=4242)])
    prog = Program.from_asm("call btf 4242\nexit")
    assert VM(prog, engine, helpers=reg).run() == 42


def test_custom_registry_helper_is_called(engine):
    reg = HelperRegistry()

    @reg.helper(121)
    def add3(ctx, r1, r2, r3, r4, r5):
        return r1 + r2 + r3

    prog = Program.from_asm("mov %r1, 1\nmov %r2, 20\nmov %r3, 300\ncall 121\nexit")
    assert VM(prog, engine, helpers=reg).run() == 321


def test_callx_resolves_against_the_vm_registry(engine):
    reg = HelperRegistry([Helper(122, "seven", _const(7))])
    prog = Program.from_asm("mov %r1, 122\ncall %r1\nexit")
    assert VM(prog, engine, helpers=reg).run() == 7


def test_assembler_resolves_helper_names():
    prog = Program.from_asm("call ktime_get_ns\nexit")
    assert prog.insns[0].imm == 5
