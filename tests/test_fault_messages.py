"""Fault messages a person can act on (issue 14): a memory fault names the region and the offset inside it
(`faultinfo.describe_access`, the one description both engines use), with the host address only as a detail;
limits name their value and the Config field; batch faults name the record. Every case runs in both engines
and the wording is compared between them."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from bpfjit import (VM, ArrayMap, Config, Filter, Program, RingBufMap, Runtime, RuntimeFault, pt_regs,
                    pt_regs_array)
from bpfjit.faultinfo import Span, describe_access
from bpfjit.memory import PERM_R, PERM_RW

CHECKED = Config(safety="checked")       # runtime checks, no verifier: the program reaches its fault


def _fault(fn) -> RuntimeFault:
    with pytest.raises(RuntimeFault) as ei:
        fn()
    return ei.value


def _what(e: RuntimeFault) -> str:
    """The message without its host-address detail (addresses differ between runs and engines)."""
    return str(e).split("; host address")[0]


def _both(make_and_run) -> RuntimeFault:
    """The fault of the same run in both engines, checked to read the same; the interpreter's."""
    faults = [_fault(lambda eng=eng: make_and_run(eng)) for eng in ("interp", "jit")]
    a, b = faults
    assert (_what(a), a.kind, a.pc, a.size, a.region, a.offset, a.record) == \
        (_what(b), b.kind, b.pc, b.size, b.region, b.offset, b.record)
    return a


MEM_CASES = {   # program over 10 bytes of mem -> (region, offset, message after "instruction N: ")
    "past the end": ("ldxh %r0, [%r1+12]\nexit", "mem", 12,
                     "load of 2 bytes at mem offset 12, 4 bytes past its end (length 10)"),
    "straddles the end": ("ldxw %r0, [%r1+8]\nexit", "mem", 8,
                          "load of 4 bytes at mem offset 8, 2 bytes past its end (length 10)"),
    "before the start": ("ldxb %r0, [%r1-3]\nexit", "mem", -3,
                         "load of 1 byte at mem offset -3, before its start (length 10)"),
    "stack below": ("stdw [%r10-4104], 1\nexit", "stack", -4104,
                    "store of 8 bytes at stack offset -4104, below the 4096-byte stack: Config.max_call_depth 8 "
                    "frames of Config.stack_size 512 bytes"),
    "stack above": ("stdw [%r10+8], 1\nexit", "stack", 8,
                    "store of 8 bytes at stack offset 8, 16 bytes above its top: Config.max_call_depth 8 frames "
                    "of Config.stack_size 512 bytes"),
    "atomic": ("mov %r2, 1\nlock add [%r1+16], %r2\nexit", "mem", 16,
               "atomic access of 8 bytes at mem offset 16, 14 bytes past its end (length 10)"),
    "wild": ("mov %r2, 1\nlsh %r2, 40\nadd %r1, %r2\nldxb %r0, [%r1]\nexit", None, None,
             "load of 1 byte at an address in no region the program may access"),
}


@pytest.mark.parametrize("name", MEM_CASES)
def test_memory_fault_names_region_and_offset(engine, name):
    src, region, offset, text = MEM_CASES[name]
    mem = bytearray(10)
    e = _fault(lambda: VM(Program.from_asm(src), engine, CHECKED).run(mem))
    assert (e.region, e.offset) == (region, offset)
    assert _what(e) == f"instruction {e.pc}: {text}"
    assert str(e).endswith(f"; host address {e.addr:#x} size {e.size}")     # the address is only a detail
    assert e.key()[0] in ("load", "store", "atomic") and e.addr is not None


@pytest.mark.parametrize("name", MEM_CASES)
def test_memory_fault_text_is_identical_in_both_engines(name):
    src = MEM_CASES[name][0]
    arr = np.zeros(10, np.uint8)            # the same buffer: identical host addresses too
    faults = [_fault(lambda eng=eng: VM(Program.from_asm(src), eng, CHECKED).run(arr)) for eng in ("interp", "jit")]
    assert str(faults[0]) == str(faults[1]) and faults[0].key() == faults[1].key()


def test_null_pointer(engine):
    e = _fault(lambda: VM(Program.from_asm("ldxdw %r0, [%r1+8]\nexit"), engine, CHECKED).run())
    assert (e.region, e.offset) == ("null", 8)
    assert _what(e) == ("instruction 0: load of 8 bytes at NULL + 8 (a pointer that may be NULL, such as a map "
                        "lookup's result, must be checked before use)")


def test_readonly_mem_store(engine):
    e = _fault(lambda: VM(Program.from_asm("stw [%r1+4], 1\nexit"), engine, CHECKED).run(bytes(10), readonly=True))
    assert (e.kind, e.region, e.offset) == ("store", "mem", 4)
    assert _what(e) == "instruction 0: store of 4 bytes at mem (read-only) offset 4: the program may not write there"


def _runtime() -> tuple[Runtime, ArrayMap]:
    rt = Runtime(config=CHECKED)
    counts = ArrayMap(4, 8, 4)
    rt.add_map(counts, "counts")
    return rt, counts


def _kprobe(rt: Runtime, src: str, engine: str):
    return rt.kprobe(rt.assemble(src, prog_type="kprobe", license="GPL", kern_version=rt.kern_version), engine,
                     CHECKED)


CTX_STORE = "stdw [%r1+8], 1\nmov %r0, 0\nexit"
CTX_TEXT = "store of 8 bytes at ctx (pt_regs, read-only) offset 8: the program may not write there"


def test_kprobe_context_is_named(engine):
    rt, _ = _runtime()
    e = _fault(lambda: _kprobe(rt, CTX_STORE, engine).fire(pt_regs(di=1)))
    assert (e.region, e.offset, e.record) == ("ctx", 8, None)
    assert _what(e) == f"instruction 0: {CTX_TEXT}"


def test_kprobe_fire_batch_names_the_record(engine):
    rt, _ = _runtime()
    src = "ldxdw %r2, [%r1+112]\njne %r2, 5, +1\nstdw [%r1+8], 1\nmov %r0, 0\nexit"     # faults where di == 5
    e = _fault(lambda: _kprobe(rt, src, engine).fire_batch(pt_regs_array(8, di=np.arange(8))))
    assert e.record == 5
    assert _what(e) == f"record 5: instruction 2: {CTX_TEXT}"


LOOKUP_THEN = """
    stw [%r10-4], 0
    lddw %r1, map(counts)
    mov %r2, %r10
    add %r2, -4
    call map_lookup_elem
    jeq %r0, 0, +2
    ldxdw %r0, [%r0+40]
    exit
    mov %r0, 0
    exit
"""


def test_map_value_is_named(engine):
    rt, _ = _runtime()
    e = _fault(lambda: _kprobe(rt, LOOKUP_THEN, engine).fire(pt_regs()))
    assert (e.region, e.offset) == ("map:counts", 40)
    assert _what(e) == ("instruction 7: load of 8 bytes at map 'counts' offset 40, 16 bytes past its end "
                        "(length 32: 4 values of 8 bytes)")


def test_unchecked_lookup_result_is_a_null_pointer(engine):
    rt, _ = _runtime()
    src = LOOKUP_THEN.replace("stw [%r10-4], 0", "stw [%r10-4], 9").replace("jeq %r0, 0, +2\n", "") \
        .replace("[%r0+40]", "[%r0+0]")
    e = _fault(lambda: _kprobe(rt, src, engine).fire(pt_regs()))
    assert (e.region, e.offset) == ("null", 0) and "NULL + 0" in str(e)


def test_ring_buffer_is_named(engine):
    rt = Runtime(config=CHECKED)
    rt.add_map(RingBufMap(4096), "events")
    src = """
        lddw %r1, map(events)
        mov %r2, 8
        mov %r3, 0
        call ringbuf_reserve
        jeq %r0, 0, +3
        stdw [%r0+4096], 1
        mov %r0, 0
        exit
        mov %r0, 0
        exit
    """
    e = _fault(lambda: _kprobe(rt, src, engine).fire(pt_regs()))
    assert e.region == "ringbuf:events" and "at ring buffer 'events' offset" in str(e)
    assert "past its end (length 4096)" in str(e)


def test_helper_memory_fault_is_described_like_the_programs_own(engine):
    """A helper writing past the stack top (probe_read of 16 bytes to r10-8) faults at the call."""
    rt, _ = _runtime()
    src = "mov %r1, %r10\nadd %r1, -8\nmov %r2, 16\nmov %r3, %r10\nadd %r3, -64\ncall probe_read\nexit"
    e = _fault(lambda: _kprobe(rt, src, engine).fire(pt_regs()))
    assert (e.kind, e.pc, e.region, e.offset) == ("store", 5, "stack", -8)
    assert _what(e).startswith("instruction 5: store of 16 bytes at stack offset -8, 8 bytes above its top")


def test_describe_access_is_the_one_description():
    b = 1 << 20
    mem = Span("mem", "mem", b, b + 10, PERM_RW)
    ro = Span("ctx", "ctx (pt_regs)", 2 * b, 2 * b + 168, PERM_R)
    spans = [mem, ro]
    assert describe_access("load", b + 12, 2, spans) == \
        ("mem", 12, "load of 2 bytes at mem offset 12, 4 bytes past its end (length 10)")
    assert describe_access("store", 3 * b - 520, 8, [Span("stack", "stack", 3 * b - 512, 3 * b, PERM_RW, True)]) == \
        ("stack", -520, "store of 8 bytes at stack offset -520, below the 512-byte stack")
    assert describe_access("store", 2 * b + 8, 8, spans).text == \
        "store of 8 bytes at ctx (pt_regs, read-only) offset 8: the program may not write there"
    assert describe_access("load", 8, 8, spans + [Span("x", "x", 0, 4, PERM_RW)]).region == "null"
    assert describe_access("load", 1 << 40, 8, spans) == \
        (None, None, "load of 8 bytes at an address in no region the program may access")
    assert describe_access("load", 1 << 40, 8, []).region is None


# ---- limits: their value and the Config field ----
def test_insn_limit_says_its_value_and_field(engine):
    vm = VM(Program.from_asm("ja -1\nexit"), engine, Config(safety="checked", insn_limit=1000))
    e = _fault(vm.run)
    assert (e.kind, e.pc) == ("insn_limit", 0)
    assert str(e) == "instruction 0: instruction limit of 1000 reached (Config.insn_limit)"


def test_call_depth_says_its_value_and_field(engine):
    src = "call local f\nexit\nf:\ncall local f\nexit"          # unbounded recursion
    e = _fault(lambda: VM(Program.from_asm(src), engine, Config(safety="checked", max_call_depth=3)).run())
    assert e.kind == "call_depth"
    assert str(e) == f"instruction {e.pc}: call depth limit of 3 frames reached (Config.max_call_depth)"


def test_mem_size_says_its_value_and_field(engine):
    e = _fault(lambda: VM(Program.from_asm("mov %r0, 0\nexit"), engine, Config(safety="checked", mem_size=8))
               .run(bytes(4)))
    assert e.kind == "mem_size" and "Config.mem_size is 8" in str(e) and "mem has 4 bytes" in str(e)


# ---- batch runs name the record ----
BATCH_SRC = "ldxb %r0, [%r1+0]\njeq %r0, 0, +1\nldxdw %r0, [%r1+8]\nexit"     # faults where byte 0 != 0


def test_run_batch_names_the_record(engine):
    recs = np.zeros((6, 10), np.uint8)
    recs[4, 0] = 1
    e = _fault(lambda: VM(Program.from_asm(BATCH_SRC), engine, CHECKED).run_batch(recs))
    assert (e.record, e.region, e.offset) == (4, "record", 8)
    assert _what(e) == "record 4: instruction 2: load of 8 bytes at record offset 8, 6 bytes past its end (length 10)"


def test_filter_names_the_record_of_the_whole_input(engine):
    recs = np.zeros((300, 10), np.uint8)
    recs[250, 0] = 1
    f = Filter(Program.from_asm(BATCH_SRC), engine=engine, config=CHECKED, chunk=100)
    e = _fault(lambda: f.r0(recs, threads=2))
    assert e.record == 250 and str(e).startswith("record 250: instruction 2: load of 8 bytes at record offset 8")


def test_identical_words_between_engines_for_bytes_input():
    """bytes input lives at different host addresses in the two engines: the words still match."""
    _both(lambda eng: VM(Program.from_asm("ldxh %r0, [%r1+12]\nexit"), eng, CHECKED).run(bytes(10)))
    _both(lambda eng: VM(Program.from_asm(BATCH_SRC), eng, CHECKED).run_batch(np.ones((3, 10), np.uint8)))


def test_fault_pickles_with_its_attributes():
    recs = np.ones((2, 10), np.uint8)
    e = _fault(lambda: VM(Program.from_asm(BATCH_SRC), "interp", CHECKED).run_batch(recs))
    back = pickle.loads(pickle.dumps(e))
    assert (str(back), back.key(), back.region, back.offset, back.record) == \
        (str(e), e.key(), e.region, e.offset, e.record)


# ---- typing: CI type-checks the package ----
def test_ci_runs_mypy_over_the_package():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert "make typecheck" in ci and ci.index("make typecheck") < ci.index("make test")
    make = (root / "Makefile").read_text()
    assert "typecheck: $(STAMP)" in make and "$(BIN)/python -m mypy bpfjit" in make
    pyproject = (root / "pyproject.toml").read_text()
    assert '"mypy>=' in pyproject and "[tool.mypy]" in pyproject and "ignore_errors" not in pyproject
    assert (root / "bpfjit" / "py.typed").exists()
