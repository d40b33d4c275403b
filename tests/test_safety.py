"""Safety at every seam (issue 8), in both engines and in checked mode: programs that read and write just
outside every region through every path must fault with the exact kind, pc, address and size (the same in
both engines, since each test asserts fixed expectations) and change nothing outside; and bad input through
every public entry raises a BPFError subclass, never another exception.

Regions and paths covered:
- direct access: mem (numpy, in place), the stack (below r10 - stack_size * max_call_depth, at and above
  r10), array map values, the read-only kprobe context, read-only mem;
- helpers: map_lookup/update with key/value pointers just past the stack or mem, probe_read destination and
  source, trace_printk's format;
- tail-call targets (a target reading beyond its caller's stack), batch loops (record i reading record i+1,
  the last record reading past the end), subprograms (docs/semantics.md: the stack is ONE region, so a
  callee may read its caller's frame above its own r10; outside the whole stack it faults);
- the meter after run_batch / bench (`engine.last_count` is the count of the last run);
- bad input: Program.from_insns/from_bytes/from_asm, Config, VM(...), run/run_batch/bench arguments.

Library gaps that these tests expose are marked xfail(strict=True, reason="lib: ...") so that the fix flips them.
"""
from __future__ import annotations

import errno
import signal
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfjit import VM, BPFError, Config, ConfigError, LoadError, Program, RuntimeFault, isa
from bpfjit.helpers import Helper, default_registry
from bpfjit.helpers.map_helpers import register_map_helpers
from bpfjit.isa import Insn
from bpfjit.maps import ArrayMap, HashMap, ProgArrayMap
from bpfjit.progtypes import pt_regs
from bpfjit.runtime import Runtime, kernel_version
from bpfjit.vm import thread_stack

M64 = (1 << 64) - 1
KV = kernel_version(4, 1, 0)
GUARD = 0xA5          # the bytes around a buffer: must still be there after a run


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def runtime(config: Config | None = None, registry=None) -> Runtime:
    return Runtime(config or Config(), helpers=registry or register_map_helpers(default_registry().copy()),
                   kern_version=KV)


def guarded(n: int, fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(whole, inner): `inner` is n bytes (contiguous) inside a bigger array whose 16 bytes on either side
    are GUARD, so a store just outside `inner` would be seen."""
    whole = np.full(n + 32, GUARD, dtype=np.uint8)
    inner = whole[16:16 + n]
    inner[:] = fill
    return whole, inner


def assert_guard(whole: np.ndarray) -> None:
    assert whole[:16].tolist() == [GUARD] * 16 and whole[-16:].tolist() == [GUARD] * 16


def fault_of(fn) -> RuntimeFault:
    with pytest.raises(RuntimeFault) as ei:
        fn()
    return ei.value


def stack_top(cfg: Config = Config()) -> int:
    return thread_stack(cfg.stack_size * cfg.max_call_depth).end


# =============================================================================== direct access: mem
MEM_CASES = [   # (instruction, kind, offset from mem start, size); mem is 16 bytes
    ("ldxb %r0, [%r1+16]", "load", 16, 1),
    ("ldxb %r0, [%r1-1]", "load", -1, 1),
    ("ldxdw %r0, [%r1+9]", "load", 9, 8),          # straddles the end
    ("ldxdw %r0, [%r1-4]", "load", -4, 8),         # straddles the start
    ("stb [%r1+16], 1", "store", 16, 1),
    ("stb [%r1-1], 1", "store", -1, 1),
    ("stxdw [%r1+12], %r1", "store", 12, 8),
    ("stw [%r1-2], 7", "store", -2, 4),
    ("lock add [%r1+16], %r2", "atomic", 16, 8),
    ("lock add32 [%r1-4], %r2", "atomic", -4, 4),
    ("mov %r0, 0\nlock cmpxchg [%r1+12], %r2", "atomic", 12, 8),
]


@pytest.mark.parametrize("insn,kind,off,size", MEM_CASES, ids=[c[0].split("\n")[-1] for c in MEM_CASES])
def test_mem_just_outside(engine, insn, kind, off, size):
    whole, mem = guarded(16, 0x11)
    prog = Program.from_asm(f"mov %r2, 1\n{insn}\nexit")
    pc = insn.count("\n") + 1
    err = fault_of(lambda: VM(prog, engine).run(mem))
    assert err.key() == (kind, pc, mem.ctypes.data + off, size)
    assert_guard(whole)
    assert mem.tolist() == [0x11] * 16


@pytest.mark.parametrize("how", ["readonly-flag", "readonly-array"])
def test_read_only_mem_refuses_stores_and_atomics(engine, how):
    whole, mem = guarded(16, 3)
    if how == "readonly-array":
        mem.flags.writeable = False
    ro = how == "readonly-flag"
    for insn, kind in (("stb [%r1], 1", "store"), ("lock add [%r1], %r1", "atomic")):
        err = fault_of(lambda: VM(Program.from_asm(f"{insn}\nexit"), engine).run(mem, readonly=ro))
        assert err.key() == (kind, 0, mem.ctypes.data, 1 if kind == "store" else 8)
    assert VM(Program.from_asm("ldxb %r0, [%r1+15]\nexit"), engine).run(mem, readonly=ro) == 3
    assert mem.tolist() == [3] * 16
    assert_guard(whole)


# ============================================================================= direct access: stack
STACK_CONFIGS = [Config(), Config(stack_size=256, max_call_depth=2), Config(stack_size=64, max_call_depth=1)]


@pytest.mark.parametrize("cfg", STACK_CONFIGS, ids=lambda c: f"{c.stack_size}x{c.max_call_depth}")
def test_stack_bounds(engine, cfg):
    total = cfg.stack_size * cfg.max_call_depth
    top = stack_top(cfg)
    stack = thread_stack(total)
    cases = [   # (instruction, kind, address, size)
        (f"ldxb %r0, [%r10-{total + 1}]", "load", top - total - 1, 1),
        (f"ldxdw %r0, [%r10-{total + 4}]", "load", top - total - 4, 8),     # straddles the bottom
        ("ldxb %r0, [%r10+0]", "load", top, 1),                             # at r10
        ("ldxdw %r0, [%r10-4]", "load", top - 4, 8),                        # straddles the top
        (f"stb [%r10-{total + 1}], 1", "store", top - total - 1, 1),
        ("stb [%r10+0], 1", "store", top, 1),
        ("stxdw [%r10-7], %r10", "store", top - 7, 8),
        (f"lock add [%r10-{total + 8}], %r1", "atomic", top - total - 8, 8),
        ("lock xchg [%r10+8], %r1", "atomic", top + 8, 8),
    ]
    for insn, kind, addr, size in cases:
        stack.buf[:] = 0x5A
        err = fault_of(lambda: VM(Program.from_asm(f"{insn}\nexit", cfg), engine, cfg).run())
        assert err.key() == (kind, 0, addr, size), insn
        assert stack.buf.tolist() == [0x5A] * total, insn
    # the first and the last byte are inside
    ok = f"stb [%r10-{total}], 7\nstb [%r10-1], 9\nldxb %r0, [%r10-{total}]\nldxb %r1, [%r10-1]\nadd %r0, %r1\nexit"
    assert VM(Program.from_asm(ok, cfg), engine, cfg).run() == 16


# =========================================================================== direct access: subprograms
def test_callee_may_read_its_callers_frame(engine):
    """docs/semantics.md: r10 is lowered by stack_size per call and every access must fall inside one region;
    the stack of all frames is one region, so a callee reads its caller's frame above its own r10."""
    src = "stb [%r10-8], 0x55\ncall local f\nexit\nf:\nldxb %r0, [%r10+504]\nexit"
    assert VM(Program.from_asm(src), engine).run() == 0x55


def test_callee_writes_into_its_callers_frame_are_seen(engine):
    src = "stdw [%r10-8], 0\ncall local f\nldxdw %r0, [%r10-8]\nexit\nf:\nstdw [%r10+504], 77\nexit"
    assert VM(Program.from_asm(src), engine).run() == 77


def test_callee_at_the_top_of_the_stack_faults(engine):
    """The callee's [r10 + 512] is the whole stack's top: outside."""
    err = fault_of(lambda: VM(Program.from_asm("call local f\nexit\nf:\nldxb %r0, [%r10+512]\nexit"),
                              engine).run())
    assert err.key() == ("load", 2, stack_top(), 1)


def test_deepest_callee_below_the_stack_faults(engine):
    """At max_call_depth the deepest frame's r10 - stack_size is the bottom of the stack; one byte below
    faults."""
    cfg = Config(stack_size=64, max_call_depth=3)
    src = "call local a\nexit\na:\ncall local b\nexit\nb:\nstb [%r10-64], 1\nldxb %r0, [%r10-65]\nexit"
    err = fault_of(lambda: VM(Program.from_asm(src, cfg), engine, cfg).run())
    assert err.key() == ("load", 5, stack_top(cfg) - 3 * 64 - 1, 1)


# ============================================================================ direct access: map values
def test_array_map_value_bounds(engine):
    rt = runtime()
    arr = ArrayMap(4, 8, 2, name="arr", value_type=np.uint64)
    rt.add_map(arr)
    arr[0], arr[1] = 1, 2
    base = arr.direct_value_addr(0)
    look = "stw [%r10-4], {k}\nlddw %r1, map(arr)\nmov %r2, %r10\nadd %r2, -4\ncall map_lookup_elem\n" \
           "jne %r0, 0, +2\nmov %r0, 99\nexit\n"
    cases = [   # (key, access, kind, address, size): the map's values are one region (2 x 8 bytes)
        (1, "ldxb %r0, [%r0+8]", "load", base + 16, 1),
        (1, "ldxdw %r0, [%r0+1]", "load", base + 9, 8),
        (0, "ldxb %r0, [%r0-1]", "load", base - 1, 1),
        (1, "stb [%r0+8], 1", "store", base + 16, 1),
        (0, "stdw [%r0-8], 1", "store", base - 8, 8),
        (1, "lock add [%r0+8], %r1", "atomic", base + 16, 8),
    ]
    for key, access, kind, addr, size in cases:
        prog = rt.assemble(look.format(k=key) + access + "\nexit")
        err = fault_of(lambda: VM(prog, engine, rt.config, runtime=rt).run())
        assert err.key() == (kind, 9, addr, size), access
        assert (arr[0], arr[1]) == (1, 2)
    # inside: key 0 may reach key 1's value (the same region), as in the seed
    prog = rt.assemble(look.format(k=0) + "ldxdw %r0, [%r0+8]\nexit")
    assert VM(prog, engine, rt.config, runtime=rt).run() == 2


def test_frozen_array_map_refuses_stores(engine):
    rt = runtime()
    ro = ArrayMap(4, 8, 1, name="ro", value_type=np.uint64)
    rt.add_map(ro)
    ro[0] = 5
    ro.freeze()
    prog = rt.assemble("lddw %r1, map_value(ro, 0)\nldxdw %r0, [%r1]\nstdw [%r1], 6\nexit")
    err = fault_of(lambda: VM(prog, engine, rt.config, runtime=rt).run())
    assert err.key() == ("store", 3, ro.direct_value_addr(0), 8) and ro[0] == 5


# ============================================================================ direct access: kprobe ctx
def kprobe(rt, text):
    return rt.assemble(text, prog_type="kprobe", kern_version=KV, license="GPL")


@pytest.mark.parametrize("insn,kind,off,size", [
    ("ldxb %r0, [%r1+168]", "load", 168, 1),
    ("ldxdw %r0, [%r1+164]", "load", 164, 8),
    ("ldxb %r0, [%r1-1]", "load", -1, 1),
    ("stdw [%r1+112], 1", "store", 112, 8),        # read-only: a store inside faults too
    ("stb [%r1+168], 1", "store", 168, 1),
    ("lock add [%r1], %r1", "atomic", 0, 8),
])
def test_kprobe_context_is_read_only_and_bounded(engine, insn, kind, off, size):
    rt = runtime()
    regs = pt_regs(di=11)
    err = fault_of(lambda: VM(kprobe(rt, f"{insn}\nexit"), engine, rt.config, runtime=rt).run(regs))
    assert err.key() == (kind, 0, regs.ctypes.data + off, size)
    assert int(regs["di"]) == 11 and regs.tobytes()[:112] == bytes(112)


@pytest.mark.parametrize("size", [0, 167, 169, 336])
def test_kprobe_context_of_the_wrong_size_is_refused(engine, size):
    rt = runtime()
    vm = VM(kprobe(rt, "ldxdw %r0, [%r1+112]\nexit"), engine, rt.config, runtime=rt)
    with pytest.raises(ConfigError, match="168"):
        vm.run(np.zeros(size, dtype=np.uint8))
    with pytest.raises(ConfigError):
        vm.run(None)


def test_kprobe_batch_is_read_only(engine):
    rt = runtime()
    regs = np.zeros((3, 168), dtype=np.uint8)
    vm = VM(kprobe(rt, "mov %r0, 0\nstb [%r1], 1\nexit"), engine, rt.config, runtime=rt)
    err = fault_of(lambda: vm.run_batch(regs))
    assert (err.key(), err.record) == (("store", 1, regs.ctypes.data, 1), 0) and not regs.any()


# ================================================================================= helpers' pointers
def map_rt():
    rt = runtime()
    arr = ArrayMap(4, 8, 4, name="arr", value_type=np.uint64)
    h = HashMap(4, 8, 8, name="h", value_type=np.uint64)
    rt.add_map(arr)
    rt.add_map(h)
    return rt, arr, h


KEY_PTRS = {   # where a 4-byte key pointer points (r2), with mem 16 bytes in r1
    "at r10": "mov %r2, %r10",
    "r10-2": "mov %r2, %r10\nadd %r2, -2",
    "below the stack": "mov %r2, %r10\nadd %r2, -4097",
    "mem end": "mov %r2, %r1\nadd %r2, 16",
    "mem end-2": "mov %r2, %r1\nadd %r2, 14",
    "before mem": "mov %r2, %r1\nadd %r2, -2",
    "null": "mov %r2, 0",
}


@pytest.mark.parametrize("where", list(KEY_PTRS))
@pytest.mark.parametrize("m", ["arr", "h"])
def test_map_lookup_with_a_key_just_outside(engine, where, m):
    rt, arr, h = map_rt()
    arr[0] = 5
    h[0] = 6
    prog = rt.assemble(f"mov %r6, %r1\nlddw %r1, map({m})\n{KEY_PTRS[where]}\ncall map_lookup_elem\nexit")
    whole, mem = guarded(16, 0)
    assert VM(prog, engine, rt.config, runtime=rt).run(mem) == 0
    assert_guard(whole)


VALUE_PTRS = {   # an 8-byte value pointer (r3)
    "r10-4": "mov %r3, %r10\nadd %r3, -4",
    "at r10": "mov %r3, %r10",
    "mem end-4": "mov %r3, %r6\nadd %r3, 12",
    "before mem": "mov %r3, %r6\nadd %r3, -1",
}


@pytest.mark.parametrize("where", list(VALUE_PTRS))
@pytest.mark.parametrize("m", ["arr", "h"])
def test_map_update_with_a_value_just_outside(engine, where, m):
    rt, arr, h = map_rt()
    prog = rt.assemble(f"mov %r6, %r1\nstw [%r10-8], 1\nlddw %r1, map({m})\nmov %r2, %r10\nadd %r2, -8\n"
                       f"{VALUE_PTRS[where]}\nmov %r4, 0\ncall map_update_elem\nexit")
    whole, mem = guarded(16, 0x77)
    assert s64(VM(prog, engine, rt.config, runtime=rt).run(mem)) == -errno.EFAULT
    assert_guard(whole)
    assert arr[1] == 0 and 1 not in h


@pytest.mark.parametrize("where", [w for w in KEY_PTRS if w != "null"])
def test_map_update_and_delete_with_a_key_just_outside(engine, where):
    rt, arr, h = map_rt()
    h[0] = 3
    upd = rt.assemble(f"mov %r6, %r1\nstdw [%r10-16], 9\nlddw %r1, map(h)\n{KEY_PTRS[where]}\nmov %r3, %r10\n"
                      "add %r3, -16\nmov %r4, 0\ncall map_update_elem\nexit")
    dele = rt.assemble(f"mov %r6, %r1\nlddw %r1, map(h)\n{KEY_PTRS[where]}\ncall map_delete_elem\nexit")
    whole, mem = guarded(16, 0)
    assert s64(VM(upd, engine, rt.config, runtime=rt).run(mem)) == -errno.EFAULT
    assert s64(VM(dele, engine, rt.config, runtime=rt).run(mem)) == -errno.EFAULT
    assert len(h) == 1 and h[0] == 3
    assert_guard(whole)


def test_probe_read_destination_just_outside(engine):
    """A destination that is not writable (past r10, straddling it, read-only mem) faults "store" at the call
    with the destination's address and size; nothing is written."""
    top = stack_top()
    whole, mem = guarded(16, 0x33)
    cases = [("mov %r1, %r10\nadd %r1, -4", top - 4, None),
             ("mov %r1, %r10", top, None),
             ("mov %r1, %r10\nadd %r1, -4097", top - 4097, None),
             ("mov %r1, %r6\nadd %r1, 12", mem.ctypes.data + 12, None),
             ("mov %r1, %r6", mem.ctypes.data, "readonly")]
    for dst, addr, ro in cases:
        src = f"mov %r6, %r1\n{dst}\nmov %r2, 8\nmov %r3, %r6\ncall probe_read\nexit"
        pc = src.count("\n") - 1
        err = fault_of(lambda: VM(Program.from_asm(src), engine).run(mem, readonly=bool(ro)))
        assert err.key() == ("store", pc, addr, 8), dst
        assert mem.tolist() == [0x33] * 16
        assert_guard(whole)


@pytest.mark.parametrize("srcptr", ["mov %r3, %r6\nadd %r3, 12", "mov %r3, %r6\nadd %r3, -1",
                                    "mov %r3, %r10\nadd %r3, -4", "mov %r3, %r10"])
def test_probe_read_source_just_outside(engine, srcptr):
    """An unreadable source gives -EFAULT and a zeroed destination (no fault)."""
    whole, mem = guarded(16, 0x44)
    src = (f"mov %r6, %r1\nstdw [%r10-16], -1\nmov %r1, %r10\nadd %r1, -16\nmov %r2, 8\n{srcptr}\ncall probe_read\n"
           "ldxdw %r1, [%r10-16]\njeq %r1, 0, +1\nmov %r0, 1000\nexit")
    assert s64(VM(Program.from_asm(src), engine).run(mem)) == -errno.EFAULT
    assert_guard(whole)


@pytest.mark.parametrize("fmt,size,addr_of", [
    ("mov %r1, %r10\nadd %r1, -4", 8, lambda top, mem: top - 4),
    ("mov %r1, %r10", 4, lambda top, mem: top),
    ("mov %r1, %r6\nadd %r1, 12", 8, lambda top, mem: mem + 12),
])
def test_trace_printk_format_just_outside(engine, fmt, size, addr_of):
    whole, mem = guarded(16, ord("a"))
    src = f"mov %r6, %r1\nstw [%r10-4], 0x61\n{fmt}\nmov %r2, {size}\ncall trace_printk\nexit"
    pc = src.count("\n") - 1
    err = fault_of(lambda: VM(Program.from_asm(src), engine).run(mem))
    assert err.key() == ("load", pc, addr_of(stack_top(), mem.ctypes.data), size)


# ======================================================================================== tail calls
def tail(slot: int = 0) -> str:
    return f"lddw %r2, map(jmp)\nmov %r3, {slot}\ncall tail_call\n"


@pytest.mark.parametrize("cfg", STACK_CONFIGS[1:], ids=lambda c: f"{c.stack_size}x{c.max_call_depth}")
def test_tail_call_target_reading_beyond_the_callers_stack(engine, cfg):
    """The target runs under its caller's Config: its stack is the caller's, and one byte below or at r10
    faults in the target (at the target's pc) with the caller's stack addresses."""
    total = cfg.stack_size * cfg.max_call_depth
    rt = runtime(Config())                  # the runtime's default is bigger than the caller's
    pa = ProgArrayMap(3, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble(f"mov %r0, 0\nldxb %r0, [%r10-{total + 1}]\nexit")
    pa[1] = rt.assemble("mov %r0, 0\nstb [%r10+0], 1\nexit")
    pa[2] = rt.assemble(f"mov %r0, 0\nstb [%r10-{total}], 3\nldxb %r0, [%r10-{total}]\nexit")
    top = stack_top(cfg)
    for slot, key in ((0, ("load", 1, top - total - 1, 1)), (1, ("store", 1, top, 1))):
        vm = VM(rt.assemble(f"mov %r6, {slot}\n" + tail(slot) + "mov %r0, 42\nexit"), engine, cfg, runtime=rt)
        assert fault_of(vm.run).key() == key
    vm = VM(rt.assemble(tail(2) + "mov %r0, 42\nexit"), engine, cfg, runtime=rt)
    assert vm.run() == 3


def test_tail_call_target_faults_on_the_callers_mem_bounds(engine):
    rt = runtime()
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 0\nstb [%r1+16], 9\nexit")
    whole, mem = guarded(16, 0)
    vm = VM(rt.assemble("mov %r6, %r1\n" + tail(0) + "exit"), engine, rt.config, runtime=rt)
    assert fault_of(lambda: vm.run(mem)).key() == ("store", 1, mem.ctypes.data + 16, 1)
    assert_guard(whole)


def test_tail_call_target_in_a_batch_sees_only_the_current_record(engine):
    rt = runtime()
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("ldxb %r0, [%r1]\njeq %r0, 2, +1\nexit\nldxb %r0, [%r1+8]\nexit")
    recs = np.arange(3, dtype=np.uint8).repeat(8).reshape(3, 8).copy()
    vm = VM(rt.assemble(tail(0) + "exit"), engine, rt.config, runtime=rt)
    err = fault_of(lambda: vm.run_batch(recs))
    assert (err.key(), err.record) == (("load", 3, recs.ctypes.data + 24, 1), 2)
    recs[2] = 1
    assert vm.run_batch(recs).tolist() == [0, 1, 1]


def test_tail_call_target_python_helper_sees_the_current_record(engine):
    """The batch loop refreshes what a target needs: its Python helper reads the record being run."""
    reg = register_map_helpers(default_registry().copy())
    reg.register(Helper(951, "first_byte", lambda ctx, r1, *a: ctx.aspace.read_bytes(r1, 1)[0]))
    rt = runtime(registry=reg)
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("call first_byte\nexit")
    recs = np.arange(48, dtype=np.uint8).reshape(3, 16)
    vm = VM(rt.assemble("mov %r6, %r1\n" + tail(0) + "exit"), engine, rt.config, runtime=rt)
    assert vm.run_batch(recs).tolist() == [0, 16, 32]


@pytest.mark.parametrize("mem", ["numpy", "bytes"])
def test_tail_call_target_python_helper_when_the_caller_has_none(engine, mem):
    reg = register_map_helpers(default_registry().copy())
    reg.register(Helper(952, "first_byte2", lambda ctx, r1, *a: (ctx.aspace.read_bytes(r1, 1) or b"?")[0]))
    rt = runtime(registry=reg)
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("call first_byte2\nexit")
    vm = VM(rt.assemble("mov %r6, %r1\n" + tail(0) + "exit"), engine, rt.config, runtime=rt)
    buf = np.full(16, 7, np.uint8) if mem == "numpy" else bytes([7] * 16)
    assert (vm.run(buf), vm.run(buf)) == (7, 7)


def test_tail_call_target_ldabs_uses_the_current_records_bounds(engine):
    """ldabs in a target reads the current record, and past its end ends the program with r0 = 0."""
    rt = runtime()
    pa = ProgArrayMap(2, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("ldabsb 15\nexit")
    pa[1] = rt.assemble("mov %r0, 5\nldabsb 16\nexit")
    recs = np.arange(48, dtype=np.uint8).reshape(3, 16)
    for slot, want in ((0, [15, 31, 47]), (1, [0, 0, 0])):
        vm = VM(rt.assemble("mov %r6, %r1\n" + tail(slot) + "exit"), engine, rt.config, runtime=rt)
        assert vm.run_batch(recs).tolist() == want
        assert vm.run(recs[1].copy()) == want[1]


def test_tail_call_owner_rules_refuse_another_config(engine):
    rt = runtime()
    pa = ProgArrayMap(1, rt, name="jmp")
    rt.add_map(pa)
    pa[0] = rt.assemble("mov %r0, 1\nexit")
    caller = rt.assemble(tail(0) + "exit")
    small = Config(stack_size=64, max_call_depth=1)
    assert VM(caller, engine, small, runtime=rt).run() == 1
    for other in (Config(), Config(stack_size=64, max_call_depth=2), Config(stack_size=64, max_call_depth=1,
                                                                           insn_limit=100)):
        with pytest.raises(LoadError, match="prog_array jmp"):
            VM(caller, engine, other, runtime=rt)


# ======================================================================================= batch loops
def test_batch_record_reading_the_next_record(engine):
    recs = np.arange(48, dtype=np.uint8).reshape(3, 16)
    err = fault_of(lambda: VM(Program.from_asm("ldxb %r0, [%r1+16]\nexit"), engine).run_batch(recs))
    assert (err.key(), err.record) == (("load", 0, recs.ctypes.data + 16, 1), 0)


def test_batch_last_record_reading_past_the_end(engine):
    whole = np.full(48 + 32, GUARD, dtype=np.uint8)
    recs = whole[16:64].reshape(3, 16)
    recs[:] = 0
    recs[2, 0] = 1
    src = "ldxb %r0, [%r1]\njeq %r0, 0, +2\nstb [%r1+16], 1\nldxb %r0, [%r1+16]\nexit"
    err = fault_of(lambda: VM(Program.from_asm(src), engine).run_batch(recs))
    assert (err.key(), err.record) == (("store", 2, recs.ctypes.data + 48, 1), 2)
    assert_guard(whole)


def test_batch_record_writing_the_previous_record(engine):
    whole = np.full(48 + 32, GUARD, dtype=np.uint8)
    recs = whole[16:64].reshape(3, 16)
    recs[:] = 0
    err = fault_of(lambda: VM(Program.from_asm("stb [%r1-1], 1\nexit"), engine).run_batch(recs))
    assert (err.key(), err.record) == (("store", 0, recs.ctypes.data - 1, 1), 0)
    assert_guard(whole) or not recs.any()


@pytest.mark.parametrize("access", ["ldxb %r0, [%r1+16]", "stb [%r1-1], 1", "ldxb %r0, [%r10-4097]",
                                    "stb [%r10+0], 1", "ldxdw %r0, [%r10-8]\nldxb %r0, [%r1+15]",
                                    "lddw %r2, map_value(arr, 0)\nldxb %r0, [%r2+32]"])
def test_run_bench_and_batch_check_alike(engine, access):
    """bench and run_batch use the same regions and checks as run (issue 8 item 8): one outcome for each
    access, also for a stack access next to a mem access (the stack is region row 1 in all three)."""
    rt = runtime()
    arr = ArrayMap(4, 8, 4, name="arr", value_type=np.uint64)
    rt.add_map(arr)
    vm = VM(rt.assemble(f"stdw [%r10-8], 0\n{access}\nexit"), engine, rt.config, runtime=rt)
    whole, recs = guarded(32, 7)
    recs = recs.reshape(2, 16)
    outcomes = []
    for call in (lambda: vm.run(recs[0]), lambda: vm.bench(recs[0], 3), lambda: vm.run_batch(recs[:1])):
        try:
            outcomes.append(("ok", int(np.asarray(call()).sum())))
        except RuntimeFault as e:
            outcomes.append(e.key())
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes
    assert_guard(whole)


# ================================================================================ the meter (last_count)
LOOP = "ldxb %r2, [%r1]\nmov %r0, 0\nloop:\njeq %r2, 0, +2\nadd %r2, -1\nja loop\nexit\n"


def count_of(first_byte: int) -> int:
    return 4 + 3 * first_byte


def test_last_count_after_run_batch_is_the_last_records(engine):
    cfg = Config(insn_limit=10_000)
    vm = VM(Program.from_asm(LOOP, cfg), engine, cfg)
    vm.run(bytes([9]))
    assert vm.engine.last_count == count_of(9)
    vm.run_batch(np.array([[5], [1]], dtype=np.uint8))
    assert vm.engine.last_count == count_of(1)
    vm.run_batch(np.array([[1], [5]], dtype=np.uint8))
    assert vm.engine.last_count == count_of(5)


def test_last_count_after_bench_is_the_last_runs(engine):
    cfg = Config(insn_limit=10_000)
    vm = VM(Program.from_asm(LOOP, cfg), engine, cfg)
    vm.run(bytes([9]))
    vm.bench(np.array([2], np.uint8), 4)
    assert vm.engine.last_count == count_of(2)


def test_last_count_after_a_faulting_batch_record(engine):
    cfg = Config(insn_limit=20)
    vm = VM(Program.from_asm(LOOP, cfg), engine, cfg)
    err = fault_of(lambda: vm.run_batch(np.array([[1], [50], [1]], dtype=np.uint8)))
    assert (err.kind, err.pc, err.record, vm.engine.last_count) == ("insn_limit", 2, 1, 20)


def test_last_count_after_bench_of_zero_runs_is_unchanged(engine):
    """bench(mem, 0) runs nothing: the meter keeps the count of the last run."""
    cfg = Config(insn_limit=10_000)
    vm = VM(Program.from_asm(LOOP, cfg), engine, cfg)
    vm.run(bytes([1]))
    assert vm.bench(np.array([2], np.uint8), 0) == 0
    assert vm.engine.last_count == count_of(1)


# ============================================================================== Python helpers fail alike
def helper_vm(engine, fn, src="mov %r1, 1\ncall 950\nexit"):
    reg = default_registry().copy()
    reg.register(Helper(950, "boom", fn))
    return VM(Program.from_asm(src), engine, helpers=reg)


def test_python_helper_exception_is_a_helper_fault(engine):
    def boom(ctx, *a):
        raise ValueError("no")
    err = fault_of(helper_vm(engine, boom).run)
    assert (err.kind, err.pc) == ("helper", 1)


def test_python_helper_runtime_fault_keeps_its_kind(engine):
    def boom(ctx, *a):
        raise RuntimeFault("store", -1, "refused", 0x1000, 4)
    err = fault_of(helper_vm(engine, boom).run)
    assert err.key() == ("store", 1, 0x1000, 4)


def test_unknown_fault_kind_is_refused_at_construction():
    with pytest.raises(BPFError, match="unknown fault kind"):
        RuntimeFault("no-such-kind", 0)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_python_helper_interrupt_propagates(engine, exc):
    def boom(ctx, *a):
        raise exc()
    vm = helper_vm(engine, boom)
    with pytest.raises(exc):
        vm.run()
    assert helper_vm(engine, lambda ctx, *a: 5).run() == 5     # the thread is usable again


# ============================================================================================ timeouts
def test_run_timeout_stops_an_endless_loop(engine):
    cfg = Config(insn_limit=None)
    vm = VM(Program.from_asm("mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit", cfg), engine, cfg)
    err = fault_of(lambda: vm.run(None, timeout=0.2))
    assert err.kind == "timeout"


def test_run_batch_timeout_stops_an_endless_loop(engine):
    cfg = Config(insn_limit=None)
    vm = VM(Program.from_asm("mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit", cfg), engine, cfg)
    err = fault_of(lambda: vm.run_batch(np.zeros((2, 8), np.uint8), timeout=0.2))
    assert err.kind == "timeout"


ENDLESS = "mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit"


def test_bench_timeout_stops_an_endless_loop(engine):
    cfg = Config(insn_limit=None)
    vm = VM(Program.from_asm(ENDLESS, cfg), engine, cfg)
    assert fault_of(lambda: vm.bench(None, 5, timeout=0.2)).key()[:2] == ("timeout", 1)


def test_timeout_stops_a_bench_of_loop_free_runs(engine):
    """A loop-free program has no loop head to poll at: the bench (and batch) loop itself is stopped."""
    vm = VM(Program.from_asm("mov %r0, 1\nexit"), engine, Config(safety="checked"))
    err = fault_of(lambda: vm.bench(None, 10 ** 12, timeout=0.2))
    assert (err.kind, err.pc) == ("timeout", 0)


def test_timeout_fault_names_the_loop_head_and_the_record(engine):
    cfg = Config(insn_limit=None)
    vm = VM(Program.from_asm("ldxb %r0, [%r1]\njeq %r0, 0, +2\nloop:\nadd %r0, 1\nja loop\nexit", cfg), engine, cfg)
    err = fault_of(lambda: vm.run_batch(np.array([[0], [0], [1], [0]], np.uint8), timeout=0.3))
    assert (err.kind, err.pc, err.record) == ("timeout", 2, 2)


@pytest.mark.parametrize("limit", [None, 1 << 40])
def test_runs_after_a_timeout_are_not_stopped(engine, limit):
    """The stop request ends with its call: the next runs (fast path, batch, bench, with or without a timeout)
    run to completion."""
    cfg = Config(insn_limit=limit)
    vm = VM(Program.from_asm("ldxb %r0, [%r1]\njne %r0, 0, +1\nloop:\nja loop\nexit", cfg), engine, cfg)
    stop = np.array([0], np.uint8)
    go = np.array([5], np.uint8)
    for _ in range(2):
        assert fault_of(lambda: vm.run(stop, timeout=0.1)).kind == "timeout"
        assert vm.run(go) == 5
        assert vm.run(go, timeout=30) == 5
        assert vm.run_batch(np.array([[5], [6]], np.uint8)).tolist() == [5, 6]
        assert vm.bench(go, 10) == 5


def test_a_timeout_that_does_not_pass_changes_nothing(engine):
    vm = VM(Program.from_asm("mov %r0, 7\nexit"), engine)
    assert [vm.run(None, timeout=60) for _ in range(3)] == [7, 7, 7]
    assert vm.run_batch(np.zeros((3, 4), np.uint8), timeout=60).tolist() == [7, 7, 7]


def test_timeout_stops_a_run_with_python_helpers(engine):
    """The general path (a Python helper: the JIT's ctypes callback) is stopped the same way."""
    cfg = Config(insn_limit=None)
    vm = helper_vm(engine, lambda ctx, *a: 1, "mov %r0, 0\nloop:\ncall 950\nja loop\nexit")
    vm = VM(vm.program, engine, cfg, helpers=vm.helpers)
    assert fault_of(lambda: vm.run(None, timeout=0.2)).key()[:2] == ("timeout", 1)
    assert fault_of(lambda: vm.run_batch(np.zeros((2, 4), np.uint8), timeout=0.2)).kind == "timeout"


def test_timeout_stops_only_its_own_thread(engine):
    """A timeout armed in one thread stops that thread's run; runs in other threads go on."""
    cfg = Config(insn_limit=None)
    endless = VM(Program.from_asm(ENDLESS, cfg), engine, cfg)
    quick = VM(Program.from_asm("ldxb %r0, [%r1]\nexit", cfg), engine, cfg)
    got, done = {}, threading.Event()

    def stopper():
        try:
            endless.run(None, timeout=0.3)
        except RuntimeFault as e:
            got["stopped"] = e.kind
        finally:
            done.set()

    t = threading.Thread(target=stopper)
    t.start()
    results = []
    while not done.is_set():
        results.append(quick.run(np.array([len(results) % 200], np.uint8)))
    t.join()
    assert got == {"stopped": "timeout"}
    assert results == [i % 200 for i in range(len(results))] and results


def test_proven_code_runs_to_the_end_under_a_timeout(engine):
    """A program the verifier proves terminates by proof: a timeout that does not pass changes nothing."""
    vm = VM(Program.from_asm("mov %r0, 0\nmov %r1, 100\nl:\nadd %r0, 2\nsub %r1, 1\njne %r1, 0, l\nexit"),
            engine)
    assert vm.safety == "verified"
    assert vm.run(None, timeout=60) == 200 and vm.bench(None, 3, timeout=60) == 200


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "1", True, 1e10])
def test_bad_timeouts_are_refused(engine, timeout):
    vm = VM(PROG, engine)
    for call in (lambda: vm.run(None, timeout=timeout), lambda: vm.run_batch(np.zeros((1, 4), np.uint8),
                                                                             timeout=timeout),
                 lambda: vm.bench(None, 1, timeout=timeout)):
        with pytest.raises(ConfigError, match="timeout"):
            call()


def _interrupt_main_after(seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    t.start()
    return t


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
@pytest.mark.parametrize("limit", [None, 10 ** 15])
def test_ctrl_c_stops_an_endless_run(engine, limit):
    """Ctrl-C (SIGINT to the main thread) stops a checked run - also without an instruction limit - with
    KeyboardInterrupt (the timeout is only a backstop: if it fires, the test fails with a RuntimeFault)."""
    cfg = Config(insn_limit=limit, safety="checked")
    vm = VM(Program.from_asm(ENDLESS, cfg), engine, cfg)
    assert fault_of(lambda: vm.run(None, timeout=0.05)).kind == "timeout"      # warm: the fast path exists
    t = _interrupt_main_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            vm.run(None, timeout=60)
    finally:
        t.cancel()
    quick = VM(Program.from_asm("mov %r0, 3\nexit", cfg), engine, cfg)
    assert (quick.run(), quick.run()) == (3, 3)                 # nothing stale stops the next runs
    t = _interrupt_main_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            vm.run_batch(np.zeros((4, 8), np.uint8), timeout=60)
    finally:
        t.cancel()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_cli_run_exits_130_on_ctrl_c(engine, tmp_path):
    from bpfjit import cli
    src = tmp_path / "loop.s"
    src.write_text(ENDLESS + "\n")
    t = _interrupt_main_after(1.0)
    try:
        assert cli.main(["run", str(src), "--engine", engine, "--limit", "0", "--safety", "checked"]) == 130
    finally:
        t.cancel()


# ============================================================================ a program's own maps only
def test_map_of_another_runtime_is_refused(engine):
    """A map pointer forged from another Runtime's map (lddw of its descriptor address as a plain constant)
    gets the helper's error result, never the other runtime's data."""
    other = runtime()
    secret = ArrayMap(4, 8, 1, name="secret", value_type=np.uint64)
    other.add_map(secret)
    secret[0] = 0x5EC12E7
    rt, arr, h = map_rt()
    src = (f"lddw %r1, {secret.desc_addr:#x}\nstw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n"
           "call map_lookup_elem\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit")
    assert VM(rt.assemble(src), engine, rt.config, runtime=rt).run() == 0


def test_forged_pointer_to_an_unused_map_of_the_same_runtime_is_refused(engine):
    """The kernel's used_maps: a program reaches only the maps it was loaded with."""
    rt, arr, h = map_rt()
    arr[0] = 0x5EC12E7
    src = (f"lddw %r1, {arr.desc_addr:#x}\nstw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n"
           "call map_lookup_elem\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit")
    assert VM(rt.assemble(src), engine, rt.config, runtime=rt).run() == 0


FORGED = {   # helper call with the map pointer in r1 (r2 for tail_call / perf_event_output) -> error result
    "map_lookup_elem": ("mov %r2, %r10\nadd %r2, -8\ncall map_lookup_elem", 0),
    "map_update_elem": ("mov %r2, %r10\nadd %r2, -8\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\n"
                        "call map_update_elem", -errno.EINVAL),
    "map_delete_elem": ("mov %r2, %r10\nadd %r2, -8\ncall map_delete_elem", -errno.EINVAL),
    "map_push_elem": ("mov %r2, %r10\nadd %r2, -16\nmov %r3, 0\ncall map_push_elem", -errno.EINVAL),
    "map_pop_elem": ("mov %r2, %r10\nadd %r2, -16\ncall map_pop_elem", -errno.EINVAL),
    "ringbuf_output": ("mov %r2, %r10\nadd %r2, -16\nmov %r3, 8\nmov %r4, 0\ncall ringbuf_output",
                       -errno.EINVAL),
    "ringbuf_reserve": ("mov %r2, 8\nmov %r3, 0\ncall ringbuf_reserve", 0),
    "ringbuf_query": ("mov %r2, 0\ncall ringbuf_query", 0),
    "tail_call": ("mov %r2, %r1\nmov %r1, 0\nmov %r3, 0\ncall tail_call", -errno.EINVAL),
}
FORGED_TARGET = {"map_lookup_elem": "kv", "map_update_elem": "kv", "map_delete_elem": "kv",
                 "map_push_elem": "queue", "map_pop_elem": "queue", "ringbuf_output": "ring",
                 "ringbuf_reserve": "ring", "ringbuf_query": "ring", "tail_call": "jmp"}


@pytest.mark.parametrize("foreign", ["other runtime", "same runtime, not referenced"])
@pytest.mark.parametrize("helper", list(FORGED))
def test_every_map_helper_refuses_a_map_the_program_was_not_loaded_with(engine, helper, foreign):
    """A forged pointer to a live map of the right type (another Runtime's, or an unreferenced one of the
    program's own runtime) gets the helper's error result, and the map is unchanged."""
    from bpfjit.maps import QueueMap, RingBufMap
    rt = runtime()
    mine = {"kv": HashMap(8, 8, 4, name="kv", value_type=np.uint64),
            "queue": QueueMap(8, 4, name="queue", value_type=np.uint64), "ring": RingBufMap(4096, name="ring"), "jmp": ProgArrayMap(1, rt, name="jmp")}
    for m in mine.values():
        rt.add_map(m)
    home = rt if foreign == "same runtime, not referenced" else runtime()
    kind = FORGED_TARGET[helper]
    target = {"kv": lambda: HashMap(8, 8, 4, name="kv2", value_type=np.uint64),
              "queue": lambda: QueueMap(8, 4, name="queue2", value_type=np.uint64),
              "ring": lambda: RingBufMap(4096, name="ring2"),
              "jmp": lambda: ProgArrayMap(1, home, name="jmp2")}[kind]()
    home.add_map(target)
    if kind == "kv":
        target[0] = 77
    elif kind == "queue":
        target.push(77)
    elif kind == "jmp":
        target[0] = home.assemble("mov %r0, 77\nexit")
    # the program references its own map of the same type (so the helper is "in use"), then forges
    own = {"kv": "kv", "queue": "queue", "ring": "ring", "jmp": "jmp"}[kind]
    src = (f"lddw %r1, map({own})\nstdw [%r10-8], 0\nstdw [%r10-16], 5\n"
           f"lddw %r1, {target.desc_addr:#x}\n{FORGED[helper][0]}\nexit")
    assert s64(VM(rt.assemble(src), engine, rt.config, runtime=rt).run()) == FORGED[helper][1]
    if kind == "kv":
        assert target[0] == 77 and len(target) == 1
    elif kind == "queue":
        assert target.peek() == 77 and len(target) == 1


def test_tail_call_target_reaches_only_its_own_maps(engine):
    """A tail-call target runs with its own used_maps: the caller's map is refused to it (forged), its own
    map works, and in a batch the caller's next record reaches the caller's map again."""
    rt = runtime()
    a = ArrayMap(4, 8, 1, name="a", value_type=np.uint64)
    b = ArrayMap(4, 8, 1, name="b", value_type=np.uint64)
    pa = ProgArrayMap(2, rt, name="jmp")
    for m in (a, b, pa):
        rt.add_map(m)
    a[0], b[0] = 100, 20
    look = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\ncall map_lookup_elem\njeq %r0, 0, +1\nldxdw %r0, [%r0]\n"
    pa[0] = rt.assemble("lddw %r1, map(b)\n" + look + "exit")                          # its own map: 20
    pa[1] = rt.assemble(f"lddw %r1, map(b)\nlddw %r1, {a.desc_addr:#x}\n" + look + "exit")   # forged: 0
    caller = ("mov %r6, %r1\nlddw %r1, map(a)\n" + look +
              "ldxb %r3, [%r6]\nlddw %r2, map(jmp)\nmov %r1, %r6\njeq %r3, 9, +1\ncall tail_call\nexit")
    vm = VM(rt.assemble(caller), engine, rt.config, runtime=rt)
    assert vm.run(np.array([0], np.uint8)) == 20
    assert vm.run(np.array([1], np.uint8)) == 0
    assert vm.run(np.array([9], np.uint8)) == 100
    assert vm.run_batch(np.array([[1], [9], [0], [9]], np.uint8)).tolist() == [0, 100, 20, 100]
    assert vm.bench(np.array([9], np.uint8), 3) == 100


# ======================================================================== bad input through the public API
def insns(*first):
    return [Insn(*first), Insn(0x95, 0, 0, 0, 0)]


BAD_PROGRAMS = {   # name -> (callable building a Program, known library gap or None)
    "from_insns dst 11": (lambda: Program.from_insns(insns(0xB7, 11, 0, 0, 1)), None),
    "from_insns src 16": (lambda: Program.from_insns(insns(0xBF, 0, 16, 0, 0)), None),
    "from_insns dst -1": (lambda: Program.from_insns(insns(0xB7, -1, 0, 0, 1)), None),
    "from_insns off 70000": (lambda: Program.from_insns(insns(0xB7, 0, 0, 70000, 1)), None),
    "from_insns off -40000": (lambda: Program.from_insns(insns(0x05, 0, 0, -40000, 0)), None),
    "from_insns imm 2^33": (lambda: Program.from_insns(insns(0xB7, 0, 0, 0, 1 << 33)), None),
    "from_insns imm -2^31-1": (lambda: Program.from_insns(insns(0xB7, 0, 0, 0, -(1 << 31) - 1)), None),
    "from_insns imm float": (lambda: Program.from_insns(insns(0xB7, 0, 0, 0, 1.5)), None),
    "from_insns opcode 256": (lambda: Program.from_insns(insns(0x1B7, 0, 0, 0, 1)), None),
    "from_insns None": (lambda: Program.from_insns(None), None),
    "from_insns strings": (lambda: Program.from_insns(["mov r0, 1"]), None),
    "from_insns empty": (lambda: Program.from_insns([]), None),
    "from_bytes None": (lambda: Program.from_bytes(None), None),
    "from_bytes str": (lambda: Program.from_bytes("abcdefgh"), None),
    "from_bytes 7 bytes": (lambda: Program.from_bytes(bytes(7)), None),
    "from_bytes lddw cut": (lambda: Program.from_bytes(bytes.fromhex("1800000001000000")), None),
    "from_asm bytes": (lambda: Program.from_asm(b"exit"), None),
    "from_asm None": (lambda: Program.from_asm(None), None),
    "from_asm garbage": (lambda: Program.from_asm("mov %r0, %r1 %r2\n\x00\xff"), None),
    "from_asm r11": (lambda: Program.from_asm("mov %r11, 1\nexit"), None),
}


def _case(table, name):
    fn, gap = table[name]
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(fn, id=name, marks=marks)


@pytest.mark.parametrize("build", [_case(BAD_PROGRAMS, n) for n in BAD_PROGRAMS])
def test_bad_program_input_raises_a_bpf_error(engine, build):
    """Refused at construction, or at the latest when a VM is made in either engine."""
    with pytest.raises(BPFError):
        prog = build()
        VM(prog, engine).run(bytes(16))


LIB_CONFIG = "lib: Config does not validate its fields at construction (issue 8 item 1)"
BAD_CONFIGS = {
    "insn_limit 0": dict(insn_limit=0),
    "insn_limit -1": dict(insn_limit=-1),
    "insn_limit 2^64": dict(insn_limit=1 << 64),
    "insn_limit str": dict(insn_limit="100"),
    "opt_level 4": dict(opt_level=4),
    "opt_level -1": dict(opt_level=-1),
    "stack_size 0": dict(stack_size=0),
    "stack_size 7": dict(stack_size=7),
    "stack_size -512": dict(stack_size=-512),
    "stack_size str": dict(stack_size="512"),
    "max_call_depth 0": dict(max_call_depth=0),
    "max_call_depth 9": dict(max_call_depth=9),
    "tail_call_limit -1": dict(tail_call_limit=-1),
    "tail_call_limit 33": dict(tail_call_limit=33),
}


CONFIG_ESCAPES: set = set()       # (engine, case) pairs where a foreign exception escapes: none


@pytest.mark.parametrize("kw", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_is_refused_at_construction(kw):
    with pytest.raises(ConfigError):
        Config(**kw)


@pytest.mark.parametrize("kw", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_never_escapes_as_another_exception(engine, kw, request):
    """Whatever the Config constructor accepts today, using it raises a BPFError or runs; never a crash or
    a foreign exception type."""
    if (engine, request.node.callspec.id.split("-", 1)[1]) in CONFIG_ESCAPES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=LIB_CONFIG + ": a foreign exception escapes"))
    try:
        cfg = Config(**kw)
        VM(Program.from_asm("mov %r0, 1\nexit", cfg), engine, cfg).run(bytes(8))
    except BPFError:
        pass


PROG = Program.from_asm("mov %r0, 1\nexit")
BAD_VMS = {
    "engine name": (lambda e: VM(PROG, "llvm"), None),
    "engine None": (lambda e: VM(PROG, None), None),
    "program str": (lambda e: VM("mov %r0, 1\nexit", e), None),
    "config str": (lambda e: VM(PROG, e, "fast"), None),
    "config dict": (lambda e: VM(PROG, e, {"stack_size": 512}), None),
    "helpers object": (lambda e: VM(PROG, e, helpers=object()).run(), None),
    "runtime object": (lambda e: VM(PROG, e, runtime=object()), None),
    "prog_type bogus": (lambda e: VM(Program.from_asm("exit", prog_type="bogus"), e), None),
}


@pytest.mark.parametrize("make", [_case(BAD_VMS, n) for n in BAD_VMS])
def test_bad_vm_arguments_raise_a_bpf_error(engine, make):
    with pytest.raises(BPFError):
        make(engine)


BAD_MEMS = {
    "list": [1, 2, 3],
    "int": 5,
    "str": "abcd",
    "dict": {},
    "object array": np.array([1, "a"], dtype=object),
    "strided array": np.zeros(32, np.uint8)[::2],
    "fortran 2-d": np.asfortranarray(np.zeros((4, 4), np.uint8)),
    "strided memoryview": memoryview(bytearray(32))[::2],
    "structured with object": np.zeros(2, dtype=[("a", "u8"), ("o", object)]),
}


@pytest.mark.parametrize("mem", list(BAD_MEMS.values()), ids=list(BAD_MEMS))
def test_bad_mem_is_refused_by_run_and_bench(engine, mem):
    vm = VM(PROG, engine)
    with pytest.raises(ConfigError):
        vm.run(mem)
    with pytest.raises(ConfigError):
        vm.bench(mem, 2)


BAD_RECORDS = {
    "list": [[1, 2], [3, 4]],
    "bytes": b"\x00" * 16,
    "0-d array": np.zeros((), np.uint8),
    "object array": np.zeros((2, 4), dtype=object),
    "strided rows": np.zeros((4, 8), np.uint8)[::2],
    "strided columns": np.zeros((4, 8), np.uint8)[:, ::2],
    "fortran": np.asfortranarray(np.zeros((4, 8), np.uint8)),
}


@pytest.mark.parametrize("recs", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_bad_records_are_refused_by_run_batch(engine, recs):
    with pytest.raises(ConfigError):
        VM(PROG, engine).run_batch(recs)


@pytest.mark.parametrize("n", [-1, -(1 << 63), (1 << 62) + 1, 1 << 64, 1 << 70, 2.0, "3", None, True],
                         ids=repr)
def test_bad_bench_counts_are_refused(engine, n):
    with pytest.raises(ConfigError):
        VM(PROG, engine).bench(None, n)


def test_bench_and_batch_of_zero(engine):
    vm = VM(PROG, engine)
    assert vm.bench(None, 0) == 0
    assert vm.run_batch(np.zeros((0, 8), np.uint8)).tolist() == []


def test_accepted_buffers_see_stores_in_place(engine):
    """bytearray, writable memoryview and numpy arrays of any non-object dtype are run in place."""
    prog = Program.from_asm("stb [%r1], 9\nmov %r0, %r2\nexit")
    for buf in (bytearray(8), memoryview(bytearray(8)), np.zeros(2, np.uint32), np.zeros((2, 2), np.uint16)):
        assert VM(prog, engine).run(buf) == 8
        assert bytes(buf)[0] == 9 if not isinstance(buf, np.ndarray) else buf.reshape(-1).view(np.uint8)[0] == 9


ANY_OBJECT = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=40),
    st.lists(st.integers(0, 255), max_size=8), st.builds(bytearray, st.binary(max_size=40)),
    st.builds(lambda b, dt: np.frombuffer(b, np.uint8).copy().view(dt) if len(b) % np.dtype(dt).itemsize == 0
              else np.frombuffer(b, np.uint8).copy(), st.binary(max_size=40),
              st.sampled_from(["u1", "i2", "u4", "f8", "<u8"])),
    st.builds(lambda b, step: np.frombuffer(b, np.uint8).copy()[::step], st.binary(min_size=2, max_size=40),
              st.integers(1, 3)),
)


def test_run_batch_single_strided_record(engine):
    """A one-element 1-D array whose stride is not its itemsize is C-contiguous by numpy's rule: one record of
    itemsize bytes."""
    base = np.arange(4, dtype=np.uint8)
    recs = base[1::2][:1]
    assert recs.flags.c_contiguous and recs.strides == (2,)
    prog = Program.from_asm("ldxb %r0, [%r1]\nadd %r0, %r2\nexit")
    assert VM(prog, engine).run_batch(recs).tolist() == [1 + 1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mem=ANY_OBJECT, n=st.one_of(st.integers(-5, 5), st.integers(max_value=-1), st.integers(min_value=(1 << 62) + 1),
                                   st.none(), st.floats()))
def test_any_argument_to_run_bench_and_batch_is_a_bpf_error_or_runs(mem, n):
    """No input to run/bench/run_batch escapes as anything but a BPFError, and the engines agree on it."""
    prog = Program.from_asm("ldxb %r0, [%r1]\nexit")
    outcomes = []
    for engine in ("interp", "jit"):
        vm = VM(prog, engine)
        got = []
        for call in (lambda: vm.run(mem), lambda: vm.bench(mem, n), lambda: vm.run_batch(mem)):
            try:
                got.append(("ok", int(np.asarray(call()).sum())))
            except BPFError as e:
                got.append((type(e).__name__, getattr(e, "kind", None), getattr(e, "field", None)))
        outcomes.append(got)
    assert outcomes[0] == outcomes[1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(isa.BY_OPCODE)), st.integers(-1, 11), st.integers(-1, 11),
                          st.one_of(st.just(0), st.integers(-(1 << 16), 1 << 16)),
                          st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-(1 << 34), 1 << 34))),
                min_size=1, max_size=4))
def test_from_insns_with_random_fields(fields):
    """Any Insn fields: a Program whose every field is in range, or a BPFError."""
    try:
        prog = Program.from_insns([Insn(*f) for f in fields] + [Insn(0x95, 0, 0, 0, 0)])
    except BPFError:
        return
    except Exception as e:   # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(e).__name__} escaped from Program.from_insns: {e}")
    for i in prog.insns:
        assert 0 <= i.dst <= 10 and 0 <= i.src <= 10, i
        assert -(1 << 15) <= i.off < (1 << 15), i
        assert -(1 << 31) <= i.imm < (1 << 32), i
