"""trace_printk (helper 6) in both engines: every accept/reject rule of the seed (each allowed conversion,
rejected conversions, too many conversions, missing NUL, non-printable bytes, the byte after %p), the
message and the returned length, the trace_pipe line format, formats on the stack, concurrent writers and
ring overflow, and random formats (hypothesis) giving the same result in both twins. The format is the
run's mem (r1 = its address, r2 = its size) unless a test says otherwise.
"""
from __future__ import annotations

import re
import threading
import time
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfjit import VM, Program, RuntimeFault
from bpfjit.helpers.builtin import thread_comm
from bpfjit.helpers.trace import MAX_FMT, TRACE, parse_format

M64 = (1 << 64) - 1
EINVAL = (-22) & M64
R3, R4, R5 = (-5) & M64, 0x1234_5678_9ABC, 7
CALL = f"lddw %r3, {R3:#x}\nlddw %r4, {R4:#x}\nmov %r5, {R5}\ncall trace_printk\nexit\n"
LINE = re.compile(r"^ *(?P<comm>.{1,16})-(?P<tid>\d+) +\[(?P<cpu>\d{3})\] +(?P<sec>\d+)\.(?P<usec>\d{6}): "
                  r"bpf_trace_printk: (?P<msg>.*)$", re.S)


@pytest.fixture(autouse=True)
def empty_trace():
    TRACE.clear()
    yield
    TRACE.clear()


def printk(engine, fmt: bytes, text: str = CALL) -> int:
    return VM(Program.from_asm(text), engine).run(fmt)


def messages() -> list[str]:
    return [LINE.match(line)["msg"] for line in TRACE.read_lines()]


ACCEPTED = [   # (format without its NUL, message with r3 = -5, r4 = 0x123456789abc, r5 = 7)
    (b"plain text", "plain text"),
    (b"", ""),
    (b"%d", "-5"),
    (b"%u", "4294967291"),
    (b"%x", "fffffffb"),
    (b"%ld", "-5"),
    (b"%lu", "18446744073709551611"),
    (b"%lx", "fffffffffffffffb"),
    (b"%lld", "-5"),
    (b"%llu", "18446744073709551611"),
    (b"%llx", "fffffffffffffffb"),
    (b"%p", "fffffffffffffffb"),
    (b"a=%d b=%lx c=%u", "a=-5 b=123456789abc c=7"),
    (b"%d %d %d", "-5 1450744508 7"),              # %d of r4 is (int)(u32) r4
    (b"%u%u%u", "429496729114507445087"),
    (b"%p %p", "fffffffffffffffb 0000123456789abc"),
    (b"%p,", "fffffffffffffffb,"),
    (b"%p\t.", "fffffffffffffffb\t."),
    (b"%p%d", "fffffffffffffffb%d"),                # the byte after %p is consumed by the check: literal
    (b"%p\xa1", "fffffffffffffffb\xa1"),            # Latin-1 punctuation passes the kernel's ispunct
    (b"%p\xa0", "fffffffffffffffb\xa0"),            # ... and Latin-1 NBSP its isspace
    (b"%p\0 ignored %d", "fffffffffffffffb"),       # a NUL after %p ends the message; the rest is checked
    (b"tab\there\nnl\vvt\fff\rcr", "tab\there\nnl\vvt\fff\rcr"),
    (b"~!@#$^&*()_+{}|:<>?`-=[]\\;',./\"", "~!@#$^&*()_+{}|:<>?`-=[]\\;',./\""),
]

REJECTED = [
    b"%s", b"%c", b"%i", b"%X", b"%o", b"%e", b"%lle", b"%lls", b"%llld", b"%lp", b"%llp", b"%hd", b"%5d",
    b"%-d", b"%#x", b"%%", b"%d%%", b"100%", b"%l", b"%ll", b"%pK", b"%pa", b"%p\x80", b"%p\x01",
    b"%d %d %d %d", b"%p %p %p %p", b"%d%u%x%lx",
    b"\x01", b"bell\x07", b"del\x7f", b"\x80", b"\xe9t\xe9", b"\xff", b"a\0b",
]


@pytest.mark.parametrize("fmt,msg", ACCEPTED, ids=[repr(c[0]) for c in ACCEPTED])
def test_accepted_format(engine, fmt, msg):
    r0 = printk(engine, fmt + b"\0")
    lines = messages()
    assert lines == [msg]
    assert r0 == len(msg.encode("latin-1"))


@pytest.mark.parametrize("fmt", REJECTED, ids=repr)
def test_rejected_format(engine, fmt):
    assert printk(engine, fmt + b"\0") == EINVAL
    assert TRACE.pending == 0


@pytest.mark.parametrize("mem", [b"no nul", b"%d", b"\0x", b"ab\0 "], ids=repr)
def test_last_byte_must_be_nul(engine, mem):
    assert printk(engine, mem) == EINVAL
    assert TRACE.pending == 0


def test_nul_byte_alone_is_an_empty_message(engine):
    assert printk(engine, b"\0") == 0
    assert messages() == [""]


def test_trailing_newline_counts_but_is_not_in_the_line(engine):
    assert printk(engine, b"hi %d\n\0") == len("hi -5\n")
    assert messages() == ["hi -5"]


@pytest.mark.parametrize("size", [0, MAX_FMT + 1])
def test_size_zero_or_larger_than_the_stack_is_einval(engine, size):
    text = f"mov %r2, {size}\n" + CALL
    assert printk(engine, np.zeros(MAX_FMT + 8, dtype=np.uint8), text) == EINVAL
    assert TRACE.pending == 0


def test_largest_format(engine):
    fmt = b"x" * (MAX_FMT - 1) + b"\0"
    assert printk(engine, fmt) == MAX_FMT - 1
    assert messages() == ["x" * (MAX_FMT - 1)]


def test_unreadable_format_faults_load_at_the_call(engine):
    prog = Program.from_asm("lddw %r1, 16\nmov %r2, 4\ncall trace_printk\nexit")
    with pytest.raises(RuntimeFault) as ei:
        VM(prog, engine).run()
    assert ei.value.key() == ("load", 3, 16, 4)


def test_format_on_the_stack(engine):
    """The kernel's way: the program stores the format on its stack."""
    fmt = b"pid %d!\0"
    text = f"lddw %r1, {int.from_bytes(fmt, 'little'):#x}\nstxdw [%r10-8], %r1\n" \
           "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, 42\ncall trace_printk\nexit"
    assert VM(Program.from_asm(text), engine).run() == len("pid 42!")
    assert messages() == ["pid 42!"]


def test_rules_match_the_python_parser():
    """parse_format is the reference both twins follow: None exactly for the rejected formats."""
    for fmt, _ in ACCEPTED:
        assert parse_format(fmt + b"\0") is not None, fmt
    for fmt in REJECTED:
        assert parse_format(fmt + b"\0") is None, fmt


# ------------------------------------------------------------------------------------ the trace buffer
# Prints "%d" of a counter kept in mem[8:16], incremented by every run (mem is reused by VM.bench).
COUNTER = "ldxdw %r3, [%r1+8]\nadd %r3, 1\nstxdw [%r1+8], %r3\nmov %r2, 3\ncall trace_printk\nexit"


def counter_mem() -> np.ndarray:
    mem = np.zeros(16, dtype=np.uint8)
    mem[:3] = np.frombuffer(b"%d\0", dtype=np.uint8)
    return mem


def test_line_format(engine):
    before = time.monotonic_ns()
    printk(engine, b"hello %u\0")
    after = time.monotonic_ns()
    records = TRACE.read()
    assert len(records) == 1
    rec = records[0]
    m = LINE.match(rec.line)
    assert m is not None, rec.line
    assert m["comm"].strip() == thread_comm().decode()
    assert int(m["tid"]) == rec.tid == threading.get_native_id()
    assert int(m["cpu"]) == rec.cpu
    assert before <= rec.ts_ns <= after
    assert int(m["sec"]) * 1_000_000 + int(m["usec"]) == rec.ts_ns // 1000
    assert m["msg"] == "hello 4294967291"
    assert TRACE.read_lines() == []            # reading consumes, like trace_pipe


def test_concurrent_writers(engine):
    per_thread, nthreads = 100, 4
    vm = VM(Program.from_asm(COUNTER), engine)
    tids = {}

    def body(k):
        tids[k] = threading.get_native_id()
        vm.bench(counter_mem(), per_thread)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = TRACE.read()
    assert len(records) == per_thread * nthreads
    for k in range(nthreads):
        mine = [int(r.message) for r in records if r.tid == tids[k]]
        assert mine == list(range(1, per_thread + 1))


def test_overflow_keeps_the_newest_and_counts_lost(engine):
    extra = 10
    VM(Program.from_asm(COUNTER), engine).bench(counter_mem(), TRACE.nslots + extra)
    assert TRACE.pending == TRACE.nslots
    assert TRACE.lost == extra
    got = [int(m) for m in messages()]
    assert got == list(range(extra + 1, TRACE.nslots + extra + 1))


# ------------------------------------------------------------------------------------ random formats
TOKENS = [b"%d", b"%u", b"%x", b"%ld", b"%lu", b"%lx", b"%lld", b"%llu", b"%llx", b"%p", b"%", b"l", b"p",
          b"d", b"s", b" ", b"\t", b"\n", b".", b",", b"%%", b"%s", b"%lle", b"\0", b"\x07", b"\x7f", b"\x80",
          b"\xa0", b"\xa1", b"\xe9", b"abc"]


@cache
def vms() -> dict[str, VM]:
    return {engine: VM(Program.from_asm(CALL), engine) for engine in ("interp", "jit")}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(st.sampled_from(TOKENS), max_size=8).map(b"".join), nul=st.booleans())
def test_random_formats_same_in_both_engines(body, nul):
    """The native twin against the Python twin (and parse_format) on formats built from the pieces that
    matter to the rules."""
    fmt = body + b"\0" if nul else body or b"x"
    results = {}
    for engine, vm in vms().items():
        TRACE.clear()
        results[engine] = (vm.run(fmt), TRACE.read_lines())
    (r_i, lines_i), (r_j, lines_j) = results["interp"], results["jit"]
    assert r_i == r_j
    assert [LINE.match(x)["msg"] for x in lines_i] == [LINE.match(x)["msg"] for x in lines_j]
    assert (r_i == EINVAL) == (parse_format(fmt) is None)
