"""bpf_tail_call through a ProgArrayMap, in both engines: chains up to Config.tail_call_limit, fall-through
results (empty slot, index out of range, limit reached, not a prog array), the target's entry state, slots
changed between runs, faults inside targets, and identical r0 and instruction counts in both engines."""
from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import pytest

from bpfjit import VM, Config, LoadError, Program, RuntimeFault
from bpfjit.program import assemble
from bpfjit.helpers import Helper, default_registry
from bpfjit.helpers.map_helpers import register_map_helpers
from bpfjit.maps import ArrayMap, HashMap, ProgArrayMap
from bpfjit.runtime import Runtime

M64 = (1 << 64) - 1


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def make_runtime(config: Config | None = None, registry=None) -> Runtime:
    """Checked mode by default: these tests compare the meter (verified code runs without one)."""
    return Runtime(config or Config(safety="checked"),
                   helpers=registry or register_map_helpers(default_registry().copy()))


@pytest.fixture
def rt():
    return make_runtime()


def tail(slot: int | str = 0, ctx: str = "%r1") -> str:
    return f"mov %r1, {ctx}\nlddw %r2, map(jmp)\nmov %r3, {slot}\ncall tail_call\n"


# Each pass adds 1 to the u64 at ctx and tail-calls slot 0 (itself): 7 instructions charged per pass
# (one block ending at the call), plus the final exit.
SELF = "ldxdw %r2, [%r1]\nadd %r2, 1\nstxdw [%r1], %r2\n" + tail() + "exit\n"


def run_vm(engine, rt, prog, mem=None):
    vm = VM(prog, engine, rt.config, runtime=rt)
    r0 = s64(vm.run(mem))
    return r0, vm.engine.last_count


def setup_self_chain(rt):
    pa = ProgArrayMap(4, rt, name="jmp")
    rt.add_map(pa)
    prog = rt.assemble(SELF)
    pa[0] = prog
    return pa, prog


def test_chain_of_exactly_the_limit(engine, rt):
    _, prog = setup_self_chain(rt)
    mem = np.zeros(8, dtype=np.uint64)
    r0, count = run_vm(engine, rt, prog, mem)
    assert mem[0] == 33                       # the entry run + 32 tail calls
    assert r0 == -errno.E2BIG                 # the 33rd tail call falls through
    assert count == 33 * 7 + 1


@pytest.mark.parametrize("limit", [0, 1, 5])
def test_configured_limit(engine, limit):
    rt = make_runtime(Config(tail_call_limit=limit))
    _, prog = setup_self_chain(rt)
    mem = np.zeros(8, dtype=np.uint64)
    r0, count = run_vm(engine, rt, prog, mem)
    assert (mem[0], r0, count) == (limit + 1, -errno.E2BIG, (limit + 1) * 7 + 1)


def test_each_run_starts_with_a_fresh_count(engine, rt):
    _, prog = setup_self_chain(rt)
    vm = VM(prog, engine, rt.config, runtime=rt)
    for _ in range(3):
        mem = np.zeros(8, dtype=np.uint64)
        assert s64(vm.run(mem)) == -errno.E2BIG and mem[0] == 33


def test_bench_resets_the_count_per_run(engine, rt):
    _, prog = setup_self_chain(rt)
    mem = np.zeros(8, dtype=np.uint64)
    VM(prog, engine, rt.config, runtime=rt).bench(mem, 3)
    assert mem[0] == 3 * 33


@pytest.mark.parametrize("slot, expect", [(1, -errno.ENOENT), (4, -errno.ENOENT), (1000, -errno.ENOENT)])
def test_falls_through(engine, rt, slot, expect):
    pa = ProgArrayMap(4, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 7\nexit\n")
    r0, count = run_vm(engine, rt, rt.assemble(tail(slot) + "exit\n"))
    assert (r0, count) == (expect, 5)


def test_index_is_u32(engine, rt):
    pa = ProgArrayMap(4, rt, name="jmp")
    rt.add_map(pa)
    pa[1] = rt.assemble("mov %r0, 7\nexit\n")
    prog = rt.assemble("mov %r1, 0\nlddw %r2, map(jmp)\nlddw %r3, 0x100000001\ncall tail_call\nexit\n")
    assert run_vm(engine, rt, prog)[0] == 7


@pytest.mark.parametrize("what", ["hash", "null", "garbage"])
def test_not_a_prog_array(engine, rt, what):
    h = HashMap(4, 4, 4, name="h")
    rt.add_map(h)
    desc = {"hash": h.desc_addr, "null": 0, "garbage": 0xDEAD0}[what]
    prog = rt.assemble(f"mov %r1, 0\nlddw %r2, {desc}\nmov %r3, 0\ncall tail_call\nexit\n")
    assert run_vm(engine, rt, prog)[0] == -errno.EINVAL


def test_target_entry_state(engine, rt):
    """The target starts with r1 = ctx, every other register 0 but r10, and its own (same) stack top."""
    pa = ProgArrayMap(2, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("ldxdw %r0, [%r1]\nadd %r0, %r2\nadd %r0, %r6\nadd %r0, %r9\nmov %r3, %r10\n"
                        "stxdw [%r1+8], %r3\nexit\n")
    caller = rt.assemble("mov %r2, 5\nmov %r6, 6\nmov %r9, 9\nmov %r7, %r10\nstxdw [%r1+16], %r7\n"
                         + tail(0) + "exit\n")
    mem = np.array([40, 0, 0], dtype=np.uint64)
    assert run_vm(engine, rt, caller, mem)[0] == 40
    assert mem[1] == mem[2] != 0


def test_chain_of_different_programs(engine, rt):
    pa = ProgArrayMap(3, rt, name="jmp")
    rt.add_map(pa)
    pa[2] = rt.assemble("ldxdw %r0, [%r1]\nmul %r0, 10\nexit\n")
    pa[1] = rt.assemble("ldxdw %r2, [%r1]\nadd %r2, 3\nstxdw [%r1], %r2\n" + tail(2) + "mov %r0, 1\nexit\n")
    r0, count = run_vm(engine, rt, rt.assemble(tail(1) + "mov %r0, 2\nexit\n"), np.array([4], dtype=np.uint64))
    assert (r0, count) == (70, 4 + 7 + 3)


def test_tail_call_from_a_local_function(engine, rt):
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 11\nexit\n")
    text = "mov %r6, %r1\ncall local fn\nmov %r0, 99\nexit\nfn:\nmov %r1, %r6\n" + tail(0) + "mov %r0, 1\nexit\n"
    assert run_vm(engine, rt, rt.assemble(text))[0] == 11


def test_slot_changes_between_runs(engine, rt):
    pa = ProgArrayMap(2, rt, name="jmp")
    rt.add_map(pa)
    caller = rt.assemble(tail(0) + "exit\n")
    vm = VM(caller, engine, rt.config, runtime=rt)
    pa[0] = rt.assemble("mov %r0, 1\nexit\n")
    assert vm.run() == 1
    pa[0] = rt.assemble("mov %r0, 2\nexit\n")
    assert vm.run() == 2
    del pa[0]
    assert s64(vm.run()) == -errno.ENOENT
    pa[0] = rt.assemble("mov %r0, 3\nexit\n")
    assert vm.run() == 3
    pa.clear()
    assert s64(vm.run()) == -errno.ENOENT


def test_targets_use_maps(engine, rt):
    counts = ArrayMap(4, 8, 1, name="counts", value_type=np.uint64)
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(counts)
    rt.add_map(pa)
    pa[0] = rt.assemble("stw [%r10-4], 0\nlddw %r1, map(counts)\nmov %r2, %r10\nadd %r2, -4\n"
                        "call map_lookup_elem\njeq %r0, 0, +2\nstdw [%r0], 123\nmov %r0, 5\nexit\n")
    assert run_vm(engine, rt, rt.assemble(tail(0) + "exit\n"))[0] == 5 and counts[0] == 123


def test_fault_in_a_target(engine, rt):
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 0\nmov %r2, 0\nldxdw %r0, [%r2+16]\nexit\n")
    with pytest.raises(RuntimeFault) as ei:
        run_vm(engine, rt, rt.assemble("mov %r6, 1\n" + tail(0) + "exit\n"))
    assert ei.value.key() == ("load", 2, 16, 8)


def test_insn_limit_spans_tail_calls(engine):
    rt = make_runtime(Config(insn_limit=100))
    _, prog = setup_self_chain(rt)
    with pytest.raises(RuntimeFault) as ei:
        run_vm(engine, rt, prog, np.zeros(1, dtype=np.uint64))
    assert ei.value.kind == "insn_limit" and ei.value.pc == 0


def test_target_map_names_resolve_in_the_target(engine, rt):
    a = ArrayMap(4, 8, 1, name="a", value_type=np.uint64)
    b = ArrayMap(4, 8, 1, name="b", value_type=np.uint64)
    pa = ProgArrayMap(1, rt, name="jmp")
    for m in (a, b, pa):
        rt.add_map(m)
    target = assemble("lddw %r1, map_value(b, 0)\nstdw [%r1], 1\nmov %r0, 0\nexit\n",
                      helpers=rt.helpers.names(), maps=["b"])
    target.maps = ["b"]
    pa[0] = target
    caller = assemble(tail(0) + "exit\n", helpers=rt.helpers.names(), maps=["a", "jmp"])
    caller.maps = ["a", "jmp"]
    run_vm(engine, rt, caller)
    assert (a[0], b[0]) == (0, 1)


def test_targets_compiled_with_the_runtime_config(engine):
    rt = make_runtime(Config(checked=False))
    _, prog = setup_self_chain(rt)
    mem = np.zeros(1, dtype=np.uint64)
    assert run_vm(engine, rt, prog, mem)[0] == -errno.E2BIG and mem[0] == 33


def test_prog_array_without_runtime(engine):
    pa = ProgArrayMap(1)
    pa[0] = Program.from_asm("mov %r0, 9\nexit\n")
    rt = make_runtime()
    rt.add_map(pa, name="jmp")
    assert run_vm(engine, rt, rt.assemble(tail(0) + "exit\n"))[0] == 9


def test_targets_run_under_the_callers_config(engine):
    """The caller's Config (not the runtime's) rules its targets: a target reading 256 bytes below r10 faults
    when the caller's stack is 64 bytes, in both engines (the prog_array's owner is the first caller)."""
    rt = make_runtime(Config(stack_size=512))
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("ldxdw %r0, [%r10-256]\nexit\n")
    small = Config(stack_size=64, max_call_depth=1)
    vm = VM(rt.assemble(tail(0) + "exit\n"), engine, small, runtime=rt)
    with pytest.raises(RuntimeFault) as ei:
        vm.run()
    assert (ei.value.kind, ei.value.pc) == ("load", 0)
    assert pa.owner.config == small


def test_a_caller_with_other_rules_is_refused(engine):
    """Like the kernel's prog_array owner: every program using one prog_array shares its rules."""
    rt = make_runtime()
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 9\nexit\n")
    caller = rt.assemble(tail(0) + "exit\n")
    assert VM(caller, engine, rt.config, runtime=rt).run() == 9
    with pytest.raises(LoadError, match="prog_array jmp is used by"):
        VM(caller, engine, Config(checked=False), runtime=rt)
    with pytest.raises(LoadError, match="has type 'kprobe'"):
        pa[0] = rt.assemble("mov %r0, 1\nexit\n", prog_type="kprobe", kern_version=rt.kern_version)


def test_prog_array_without_runtime_gets_the_callers_helpers(engine):
    """A ProgArrayMap created without a runtime gives its targets the caller's helper registry and maps."""
    reg = register_map_helpers(default_registry().copy())
    reg.register(Helper(902, "answer", lambda ctx, *a: 42))
    pa = ProgArrayMap(1)
    pa[0] = Program.from_asm("call 902\nexit\n")
    rt = make_runtime(registry=reg)
    rt.add_map(pa, name="jmp")
    assert run_vm(engine, rt, rt.assemble(tail(0) + "exit\n"))[0] == 42


def test_interp_and_jit_agree_on_a_long_chain():
    """r0 and instruction count of one program in both engines (the chain of test_chain_of_exactly_the_limit
    with a branch per pass)."""
    rt = make_runtime()
    pa = ProgArrayMap(2, rt, name="jmp")
    rt.add_map(pa)
    pa[1] = rt.assemble("ldxdw %r2, [%r1]\nand %r2, 1\njeq %r2, 0, +2\nmov %r0, 3\nmov %r0, 4\n"
                        "ldxdw %r2, [%r1]\nadd %r2, 1\nstxdw [%r1], %r2\n" + tail(1) + "add %r0, 100\nexit\n")
    caller = rt.assemble(tail(1) + "exit\n")
    results = []
    for engine in ("interp", "jit"):
        mem = np.zeros(1, dtype=np.uint64)
        results.append(run_vm(engine, rt, caller, mem) + (int(mem[0]),))
    assert results[0] == results[1] and results[0][0] == -errno.E2BIG + 100


def test_no_crash_after_the_map_is_gone():
    """A prog array dropped by Python while a runtime still holds it keeps its engines alive."""
    code = ("import gc, numpy as np\n"
            "from bpfjit import VM\nfrom bpfjit.maps import ProgArrayMap\nfrom bpfjit.runtime import Runtime\n"
            "rt = Runtime()\npa = ProgArrayMap(1, rt, name='jmp')\nrt.add_map(pa)\n"
            "pa[0] = rt.assemble('mov %r0, 5\\nexit\\n')\n"
            "vm = VM(rt.assemble('lddw %r2, map(jmp)\\nmov %r3, 0\\ncall tail_call\\nexit\\n'), 'jit', runtime=rt)\n"
            "del pa\ngc.collect()\nassert vm.run() == 5\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_target_with_a_python_helper_uses_its_own_callbacks(engine):
    """A tail-call target calling a Python helper (a ctypes callback in the JIT) reaches that helper, and the
    caller's own Python helper still works on the next run (the caller's callback table is restored)."""
    reg = register_map_helpers(default_registry().copy())
    reg.register(Helper(900, "caller_py", lambda ctx, *a: 5))
    reg.register(Helper(901, "target_py", lambda ctx, *a: 7))
    rt = make_runtime(registry=reg)
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("call target_py\nadd %r0, 100\nexit\n")
    caller = rt.assemble("call caller_py\njeq %r2, 0, +5\n" + tail() + "exit\n")
    vm = VM(caller, engine, rt.config, runtime=rt)
    assert vm.run(b"\x01") == 107          # tail call into the target: its helper answers
    assert vm.run(None) == 5               # no tail call: the caller's helper answers again
    assert vm.run(b"\x01") == 107
