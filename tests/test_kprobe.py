"""Kprobe programs (the seed) in both engines: the pt_regs context (layout, PARM offsets, read-only: stores
fault "store"), firing one event or a batch with r0 != 0 keeping the event in the runtime's output ring,
the load-time checks of `Runtime.check_program` (kern_version of kprobe programs, GPL-only helpers need a
GPL-compatible license, at the call's pc) and the EventRing itself.
"""
from __future__ import annotations

import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, LoadError, Program, RuntimeFault
from bpfjit.helpers import Helper, HelperRegistry, default_registry
from bpfjit.progtypes import (PARM1, PARM2, PARM3, PARM4, PARM5, PARM6, PROG_TYPES, PT_REGS, PT_REGS_FIELDS,
                              pt_regs, pt_regs_array, valid_ctx_access)
from bpfjit.runtime import GPL_COMPATIBLE, EventRing, Runtime, host_kern_version, kernel_version

KV = kernel_version(4, 1, 0)


@pytest.fixture
def rt() -> Runtime:
    return Runtime(kern_version=KV)


def kprobe(rt: Runtime, text: str, **meta) -> Program:
    meta = {"prog_type": "kprobe", "kern_version": KV, "license": "GPL", **meta}
    return rt.assemble(text, **meta)


# ------------------------------------------------------------------------------------ pt_regs
def test_pt_regs_layout():
    assert PT_REGS.itemsize == 168
    assert PT_REGS.names == PT_REGS_FIELDS
    assert [PT_REGS.fields[f][1] for f in PT_REGS_FIELDS] == list(range(0, 168, 8))
    assert (PARM1, PARM2, PARM3, PARM4, PARM5, PARM6) == (112, 104, 96, 88, 72, 64)


def test_pt_regs_builders():
    regs = pt_regs(di=1, si=2, ip=-1)
    raw = regs.tobytes()
    assert len(raw) == 168
    assert int.from_bytes(raw[PARM1:PARM1 + 8], "little") == 1
    assert int.from_bytes(raw[PARM2:PARM2 + 8], "little") == 2
    assert int(regs["ip"]) == 2 ** 64 - 1
    batch = pt_regs_array(3, di=[7, 8, 9], dx=5)
    assert batch["di"].tolist() == [7, 8, 9] and batch["dx"].tolist() == [5, 5, 5]
    with pytest.raises(KeyError, match="rax"):
        pt_regs(rax=1)


def test_valid_ctx_access_rule():
    kp, raw = PROG_TYPES["kprobe"], PROG_TYPES["raw"]
    assert valid_ctx_access(kp, PARM1, 8, write=False)
    assert valid_ctx_access(kp, 160, 8, write=False)
    assert valid_ctx_access(kp, 4, 4, write=False)
    assert not valid_ctx_access(kp, 168, 1, write=False)
    assert not valid_ctx_access(kp, -8, 8, write=False)
    assert not valid_ctx_access(kp, 4, 8, write=False)          # misaligned
    assert not valid_ctx_access(kp, 0, 8, write=True)           # read-only
    assert valid_ctx_access(raw, 3, 8, write=True)


# ------------------------------------------------------------------------------------ running
READ_PARM1 = f"ldxdw %r0, [%r1+{PARM1}]\nexit"


def test_fire_keeps_events_with_nonzero_r0(rt, engine):
    k = rt.kprobe(kprobe(rt, READ_PARM1), engine)
    assert k.fire(pt_regs(di=0)) == 0
    assert k.fire(pt_regs(di=1, si=11)) == 1
    assert k.fire(pt_regs(di=5, si=55)) == 5            # other values alias to 1: kept
    events = rt.events.drain_array(PT_REGS)
    assert events["si"].tolist() == [11, 55]
    assert len(rt.events) == 0


def test_fire_stores_a_user_record(rt, engine):
    k = rt.kprobe(kprobe(rt, READ_PARM1), engine)
    k.fire(pt_regs(di=1), record=b"chosen")
    k.fire(pt_regs(di=0), record=b"dropped")
    assert rt.events.drain() == [b"chosen"]


def test_fire_batch_keeps_records_in_order(rt, engine):
    k = rt.kprobe(kprobe(rt, f"ldxdw %r0, [%r1+{PARM2}]\nand %r0, 1\nexit"), engine)
    regs = pt_regs_array(10, si=np.arange(10), di=np.arange(100, 110))
    r0 = k.fire_batch(regs)
    assert r0.tolist() == [i & 1 for i in range(10)]
    assert rt.events.drain_array(PT_REGS)["di"].tolist() == [101, 103, 105, 107, 109]


def test_fire_batch_with_records(rt, engine):
    k = rt.kprobe(kprobe(rt, f"ldxdw %r0, [%r1+{PARM3}]\nexit"), engine)
    records = np.arange(4, dtype=np.uint32)
    k.fire_batch(pt_regs_array(4, dx=[0, 1, 1, 0]), records=records)
    assert rt.events.drain_array(np.uint32).tolist() == [1, 2]


def test_reads_every_register(rt, engine):
    vals = {f: (i + 1) * 0x0101010101 for i, f in enumerate(PT_REGS_FIELDS)}
    body = "".join(f"ldxdw %r2, [%r1+{8 * i}]\nxor %r0, %r2\nrsh %r0, 1\n" for i in range(len(PT_REGS_FIELDS)))
    k = rt.kprobe(kprobe(rt, "mov %r0, 0\n" + body + "exit"), engine)
    expected = 0
    for f in PT_REGS_FIELDS:
        expected = (expected ^ vals[f]) >> 1
    assert k.fire(pt_regs(**vals)) == expected


@pytest.mark.parametrize("insn,size", [("stxdw [%r1+112], %r0", 8), ("stw [%r1+8], 1", 4),
                                       ("stxb [%r1+167], %r0", 1)])
def test_ctx_is_read_only(rt, engine, insn, size):
    k = rt.kprobe(kprobe(rt, f"mov %r0, 1\n{insn}\nexit"), engine)
    regs = pt_regs(di=3)
    with pytest.raises(RuntimeFault) as ei:
        k.fire(regs)
    off = int(insn.split("+")[1].split("]")[0])
    assert ei.value.key() == ("store", 1, regs.ctypes.data + off, size)
    assert int(regs["di"]) == 3 and len(rt.events) == 0


def test_ctx_store_faults_in_a_batch_with_the_record_index(rt, engine):
    k = rt.kprobe(kprobe(rt, "ldxdw %r0, [%r1+112]\njeq %r0, 0, +1\nstxdw [%r1+0], %r0\nexit"), engine)
    regs = pt_regs_array(4, di=[0, 0, 9, 0])
    with pytest.raises(RuntimeFault) as ei:
        k.fire_batch(regs)
    assert (ei.value.kind, ei.value.pc, ei.value.record) == ("store", 2, 2)
    assert regs["r15"].tolist() == [0, 0, 0, 0]


def test_read_past_pt_regs_faults(rt, engine):
    k = rt.kprobe(kprobe(rt, "ldxdw %r0, [%r1+168]\nexit"), engine)
    regs = pt_regs()
    with pytest.raises(RuntimeFault) as ei:
        k.fire(regs)
    assert ei.value.key() == ("load", 0, regs.ctypes.data + 168, 8)


def test_wrong_context_size_rejected(rt):
    k = rt.kprobe(kprobe(rt, READ_PARM1), "interp")
    with pytest.raises(ValueError, match="168"):
        k.fire(np.zeros((), dtype=[("a", "<u8")]))


def test_kprobe_needs_a_kprobe_program(rt):
    with pytest.raises(LoadError, match="kprobe"):
        rt.kprobe(rt.assemble("mov %r0, 0\nexit"), "interp")


# ------------------------------------------------------------------------------------ kern_version
def test_kern_version_must_match(rt, engine):
    with pytest.raises(LoadError) as ei:
        VM(kprobe(rt, READ_PARM1, kern_version=KV + 1), engine, runtime=rt)
    assert ei.value.field == "kern_version"
    with pytest.raises(LoadError):
        VM(kprobe(rt, READ_PARM1, kern_version=0), engine, runtime=rt)
    VM(kprobe(rt, READ_PARM1), engine, runtime=rt)


def test_raw_programs_need_no_kern_version(rt, engine):
    assert VM(rt.assemble("mov %r0, 3\nexit", kern_version=123), engine, runtime=rt).run() == 3


def test_default_kern_version_is_the_hosts():
    release = os.uname().release.split("-")[0].split(".")
    nums = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in (release + ["0", "0"])[:3]]
    assert Runtime().kern_version == host_kern_version() == kernel_version(*nums)
    assert kernel_version(4, 1, 300) == 0x0401FF


def test_unknown_program_type(rt, engine):
    with pytest.raises(LoadError, match="unknown program type"):
        VM(rt.assemble("exit", prog_type="socket"), engine, runtime=rt)


# ------------------------------------------------------------------------------------ license
GPL_CALL = "mov %r0, 0\nmov %r1, %r10\nmov %r2, 0\ncall probe_read\nexit"


@pytest.mark.parametrize("license", sorted(GPL_COMPATIBLE))
def test_gpl_compatible_licenses(rt, engine, license):
    VM(rt.assemble(GPL_CALL, license=license), engine, runtime=rt)


@pytest.mark.parametrize("license", ["", "MIT", "BSD", "gpl", "GPLv2", "GPL ", "Dual BSD/GPL\n", "Proprietary"])
def test_gpl_only_helper_needs_a_gpl_license(rt, engine, license):
    with pytest.raises(LoadError, match="probe_read") as ei:
        VM(rt.assemble(GPL_CALL, license=license), engine, runtime=rt)
    assert (ei.value.pc, ei.value.field) == (3, "imm")


@pytest.mark.parametrize("helper", ["probe_read", "trace_printk", "probe_read_str", "probe_read_user",
                                    "probe_read_kernel", "probe_read_user_str", "probe_read_kernel_str"])
def test_each_gpl_only_helper_is_checked(rt, engine, helper):
    with pytest.raises(LoadError, match=helper):
        VM(rt.assemble(f"call {helper}\nexit", license="MIT"), engine, runtime=rt)


def test_non_gpl_helpers_need_no_license(rt, engine):
    text = "call ktime_get_ns\ncall get_prandom_u32\ncall get_current_pid_tgid\nmov %r0, 1\nexit"
    assert VM(rt.assemble(text), engine, runtime=rt).run() == 1


def test_callx_counts_as_calling_every_helper(engine):
    rt = Runtime(helpers=default_registry())
    text = "mov %r0, 0\nmov %r6, 5\ncall %r6\nexit"
    with pytest.raises(LoadError) as ei:
        VM(rt.assemble(text, license="MIT"), engine, runtime=rt)
    assert ei.value.pc == 2
    VM(rt.assemble(text, license="GPL"), engine, runtime=rt)


def test_call_btf_of_a_gpl_only_helper(engine):
    reg = HelperRegistry([Helper(300, "secret", lambda ctx, *r: 1, gpl_only=True, btf_id=9000)])
    rt = Runtime(helpers=reg)
    with pytest.raises(LoadError) as ei:
        VM(Program.from_asm("mov %r0, 0\ncall btf 9000\nexit"), engine, runtime=rt)
    assert ei.value.pc == 1
    assert VM(Program.from_asm("call btf 9000\nexit", license="GPL"), engine, runtime=rt).run() == 1


def test_programs_without_a_runtime_are_not_checked(engine):
    prog = Program.from_asm(GPL_CALL, prog_type="kprobe", kern_version=1)
    assert VM(prog, engine).run(pt_regs()) == 0


# ------------------------------------------------------------------------------------ EventRing
def test_event_ring_capacity_counts_lost():
    ring = EventRing(capacity=3)
    assert ring.push(b"a") and ring.push_many(np.array([[1], [2], [3]], dtype=np.uint8)) == 2
    assert not ring.push(b"z")
    assert (len(ring), ring.lost) == (3, 2)
    assert ring.drain() == [b"a", b"\x01", b"\x02"]
    assert len(ring) == 0 and ring.push(b"b")


def test_event_ring_drain_array():
    ring = EventRing()
    assert ring.drain_array(PT_REGS).shape == (0,)
    ring.push(pt_regs(di=4))
    ring.push_many(pt_regs_array(2, di=[5, 6]))
    assert ring.drain_array(PT_REGS)["di"].tolist() == [4, 5, 6]
    ring.push(b"ab")
    ring.push(b"abc")
    with pytest.raises(ValueError, match="different sizes"):
        ring.drain_array()


# ------------------------------------------------------------------------------------ the demo
def test_kprobe_demo_checks_pass(capsys):
    """examples/kprobe_demo.py (`make demo`): its own cross-checks (interpreter vs JIT on a sample, JIT vs
    a numpy reference on every event) pass."""
    demo = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "kprobe_demo.py"))
    assert demo["main"]() == 0
    out = capsys.readouterr().out
    assert "identical r0, counts and histogram" in out
    assert "counts, histogram, kept events exact" in out
    assert out.count("bpf_trace_printk: openat: pid") == demo["SLOW_OPENATS"]
