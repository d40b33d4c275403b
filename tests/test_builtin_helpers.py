"""The built-in kernel helpers (bpfjit.helpers.builtin) in both engines: prototypes and GPL flags, probe_read
and probe_read_str (and their _user/_kernel twins) with readable, unreadable and partly readable sources and
unwritable destinations, the shared per-thread PRNG, cpu, pid/tgid, uid/gid and the thread name; and that
the JIT reaches every built-in helper natively (no Python callback).

trace_printk has its own file (test_trace_printk.py).
"""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
import pytest

from bpfjit import VM, Config, Program, RuntimeFault
from bpfjit.helpers import default_registry
from bpfjit.helpers.builtin import PRANDOM_SEED, prandom_seed, thread_comm
from bpfjit.jit.native_helpers import NATIVE

M64 = (1 << 64) - 1
EFAULT = (-14) & M64
PATTERN = 0x55
OUT = 16            # mem[0:16] receives the 16 stack bytes the helper wrote; the payload starts here


def call_pc(prog: Program) -> int:
    return next(pc for pc, f in enumerate(prog.forms) if f is not None and f.op == "call")


def into_stack(helper: str, size: int, src: str) -> str:
    """Fill [r10-16, r10) with PATTERN, call helper(r10-16, size, src), copy those 16 bytes to mem[0:16]."""
    return f"""
        mov %r9, %r1
        lddw %r7, {int.from_bytes(bytes([PATTERN]) * 8, 'little'):#x}
        stxdw [%r10-16], %r7
        stxdw [%r10-8], %r7
        {src}
        mov %r1, %r10
        add %r1, -16
        lddw %r2, {size:#x}
        call {helper}
        ldxdw %r7, [%r10-16]
        stxdw [%r9+0], %r7
        ldxdw %r7, [%r10-8]
        stxdw [%r9+8], %r7
        exit
    """


def mem_with(payload: bytes, total: int = 64) -> np.ndarray:
    mem = np.zeros(total, dtype=np.uint8)
    mem[OUT:OUT + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    return mem


def run_into_stack(engine, helper, size, src, mem):
    r0 = VM(Program.from_asm(into_stack(helper, size, src)), engine).run(mem)
    return r0, mem[:OUT].tobytes()


SRC_MEM = "mov %r3, %r9\nadd %r3, {off}"
SRC_ABS = "lddw %r3, {addr:#x}"
FILLED = bytes([PATTERN]) * 16


# ------------------------------------------------------------------------------------ prototypes
EXPECTED = {   # id: (name, gpl_only, args)
    4: ("probe_read", True, ("ptr_to_stack", "const_size", "anything")),
    5: ("ktime_get_ns", False, ()),
    6: ("trace_printk", True, ("ptr_to_stack", "const_size")),
    7: ("get_prandom_u32", False, ()),
    8: ("get_smp_processor_id", False, ()),
    14: ("get_current_pid_tgid", False, ()),
    15: ("get_current_uid_gid", False, ()),
    16: ("get_current_comm", False, ("ptr_to_uninit_mem", "const_size")),
    45: ("probe_read_str", True, ("ptr_to_uninit_mem", "const_size_or_zero", "anything")),
    112: ("probe_read_user", True, ("ptr_to_uninit_mem", "const_size_or_zero", "anything")),
    113: ("probe_read_kernel", True, ("ptr_to_uninit_mem", "const_size_or_zero", "anything")),
    114: ("probe_read_user_str", True, ("ptr_to_uninit_mem", "const_size_or_zero", "anything")),
    115: ("probe_read_kernel_str", True, ("ptr_to_uninit_mem", "const_size_or_zero", "anything")),
}


@pytest.mark.parametrize("hid", sorted(EXPECTED))
def test_prototype(hid):
    h = default_registry().get(hid)
    assert (h.name, h.gpl_only, h.args, h.ret) == EXPECTED[hid] + ("integer",)
    assert h.native in NATIVE


def test_jit_calls_no_builtin_helper_through_python():
    text = "".join(f"call {hid}\n" for hid in EXPECTED) + "exit\n"
    vm = VM(Program.from_asm(text), "jit")
    assert vm.engine.callbacks == []


# ------------------------------------------------------------------------------------ probe_read
PROBE_READ = ("probe_read", "probe_read_user", "probe_read_kernel")
PROBE_READ_STR = ("probe_read_str", "probe_read_user_str", "probe_read_kernel_str")
PAYLOAD = bytes(range(0x41, 0x41 + 48))


@pytest.mark.parametrize("helper", PROBE_READ)
def test_probe_read_copies(engine, helper):
    r0, out = run_into_stack(engine, helper, 12, SRC_MEM.format(off=OUT + 3), mem_with(PAYLOAD))
    assert r0 == 0
    assert out == PAYLOAD[3:15] + FILLED[12:]


@pytest.mark.parametrize("helper", PROBE_READ)
@pytest.mark.parametrize("src", [SRC_ABS.format(addr=8), SRC_ABS.format(addr=M64 - 3),
                                 SRC_MEM.format(off=64 - 8)],   # last 8 bytes of mem + 4 past its end
                         ids=["null-page", "wraps", "past-region-end"])
def test_probe_read_unreadable_source_zeroes_destination(engine, helper, src):
    r0, out = run_into_stack(engine, helper, 12, src, mem_with(PAYLOAD))
    assert r0 == EFAULT
    assert out == bytes(12) + FILLED[12:]


@pytest.mark.parametrize("helper", PROBE_READ)
def test_probe_read_size_zero(engine, helper):
    r0, out = run_into_stack(engine, helper, 0, SRC_ABS.format(addr=8), mem_with(PAYLOAD))
    assert (r0, out) == (0, FILLED)


def test_probe_read_size_is_32_bits(engine):
    r0, out = run_into_stack(engine, "probe_read", (1 << 32) | 4, SRC_MEM.format(off=OUT), mem_with(PAYLOAD))
    assert (r0, out) == (0, PAYLOAD[:4] + FILLED[4:])


def test_probe_read_from_the_stack_itself(engine):
    """Source and destination overlap: memmove semantics."""
    r0, out = run_into_stack(engine, "probe_read", 8, "mov %r3, %r10\nadd %r3, -12\nstw [%r10-12], 0x64636261",
                             mem_with(b""))
    assert (r0, out) == (0, b"abcd" + FILLED[4:8] + FILLED[8:])


@pytest.mark.parametrize("helper", PROBE_READ + PROBE_READ_STR)
@pytest.mark.parametrize("dst", ["lddw %r1, 8", "mov %r1, %r10\nadd %r1, -4"], ids=["null-page", "stack-end"])
def test_unwritable_destination_faults_store_at_the_call(engine, helper, dst):
    text = f"mov %r3, %r1\n{dst}\nmov %r2, 8\ncall {helper}\nexit"
    prog = Program.from_asm(text)
    with pytest.raises(RuntimeFault) as ei:
        VM(prog, engine).run(mem_with(PAYLOAD))
    e = ei.value
    assert (e.kind, e.pc, e.size) == ("store", call_pc(prog), 8)
    if "lddw" in dst:
        assert e.addr == 8


def test_probe_read_into_readonly_ctx_faults(engine):
    text = "mov %r3, %r1\nmov %r2, 4\ncall probe_read\nexit"
    with pytest.raises(RuntimeFault) as ei:
        VM(Program.from_asm(text), engine).run(mem_with(PAYLOAD), readonly=True)
    assert (ei.value.kind, ei.value.pc, ei.value.size) == ("store", 2, 4)


# ------------------------------------------------------------------------------------ probe_read_str
STR_CASES = [   # (payload at mem[16:], offset into it, size, expected r0, expected 16 stack bytes)
    (b"hello\0world", 0, 16, 6, b"hello\0" + FILLED[6:]),
    (b"hello\0world", 0, 6, 6, b"hello\0" + FILLED[6:]),
    (b"hello\0world", 0, 4, 4, b"hel\0" + FILLED[4:]),
    (b"hello\0world", 0, 1, 1, b"\0" + FILLED[1:]),
    (b"\0abc", 0, 16, 1, b"\0" + FILLED[1:]),
    (b"A" * 48, 48 - 5, 16, EFAULT, bytes(16)),            # no NUL before the region ends: -EFAULT
    (b"A" * 48, 48 - 5, 5, 5, b"AAAA\0" + FILLED[5:]),     # ... unless size stops first
    (b"A" * 47 + b"\0", 48 - 5, 16, 5, b"AAAA\0" + FILLED[5:]),
]


@pytest.mark.parametrize("helper", PROBE_READ_STR)
@pytest.mark.parametrize("payload,off,size,r0,out", STR_CASES)
def test_probe_read_str(engine, helper, payload, off, size, r0, out):
    got = run_into_stack(engine, helper, size, SRC_MEM.format(off=OUT + off), mem_with(payload))
    assert got == (r0, out)


@pytest.mark.parametrize("helper", PROBE_READ_STR)
def test_probe_read_str_unreadable(engine, helper):
    assert run_into_stack(engine, helper, 16, SRC_ABS.format(addr=8), mem_with(b"")) == (EFAULT, bytes(16))
    assert run_into_stack(engine, helper, 0, SRC_ABS.format(addr=8), mem_with(b"")) == (0, FILLED)


# ------------------------------------------------------------------------------------ prandom
def splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return z or PRANDOM_SEED


def xorshift_u32(state: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        state ^= (state << 13) & M64
        state ^= state >> 7
        state ^= (state << 17) & M64
        out.append(state >> 32)
    return out


PRANDOM4 = "mov %r9, %r1\n" + "".join(f"call get_prandom_u32\nstxdw [%r9+{8 * i}], %r0\n" for i in range(4)) + \
    "exit\n"


def prandom4(engine) -> list[int]:
    mem = np.zeros(4, dtype=np.uint64)
    VM(Program.from_asm(PRANDOM4), engine).run(mem)
    return mem.tolist()


@pytest.mark.parametrize("seed", [0, 1, 0xDEADBEEF, M64])
def test_prandom_sequence_after_seed(engine, seed):
    prandom_seed(seed)
    assert prandom4(engine) == xorshift_u32(splitmix64(seed), 4)


def test_prandom_is_one_generator_for_both_engines():
    prandom_seed(42)
    expected = xorshift_u32(splitmix64(42), 8)
    assert prandom4("interp") + prandom4("jit") == expected


def test_prandom_unseeded_thread_starts_from_its_tid(engine):
    got = {}

    def body():
        got["tid"] = threading.get_native_id()
        got["values"] = prandom4(engine)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert got["values"] == xorshift_u32(splitmix64(got["tid"] ^ PRANDOM_SEED), 4)


def test_prandom_state_is_per_thread(engine):
    """Another thread seeding and drawing does not move this thread's generator."""
    prandom_seed(7)
    first = prandom4(engine)
    t = threading.Thread(target=lambda: (prandom_seed(7), prandom4(engine)))
    t.start()
    t.join()
    assert first + prandom4(engine) == xorshift_u32(splitmix64(7), 8)


# ------------------------------------------------------------------------------------ task helpers
def run_call(engine, helper: str) -> int:
    return VM(Program.from_asm(f"call {helper}\nexit"), engine).run()


def test_get_smp_processor_id(engine):
    assert run_call(engine, "get_smp_processor_id") in os.sched_getaffinity(0)


def test_get_current_pid_tgid(engine):
    assert run_call(engine, "get_current_pid_tgid") == os.getpid() << 32 | threading.get_native_id()


def test_get_current_pid_tgid_in_another_thread(engine):
    got = {}
    t = threading.Thread(target=lambda: got.update(r0=run_call(engine, "get_current_pid_tgid"),
                                                   tid=threading.get_native_id()))
    t.start()
    t.join()
    assert got["r0"] == os.getpid() << 32 | got["tid"]
    assert got["tid"] != threading.get_native_id()


def test_get_current_uid_gid(engine):
    assert run_call(engine, "get_current_uid_gid") == os.getgid() << 32 | os.getuid()


def test_ktime_get_ns_is_monotonic(engine):
    vm = VM(Program.from_asm("call ktime_get_ns\nexit"), engine)
    a, b = vm.run(), vm.run()
    assert 0 < a <= b


COMM = "mov %r3, 0\n"      # get_current_comm takes no source


@pytest.mark.parametrize("size", [16, 8, 4, 1])
def test_get_current_comm(engine, size):
    r0, out = run_into_stack(engine, "get_current_comm", size, COMM, mem_with(b""))
    name = thread_comm()
    assert r0 == 0
    assert out == name[:size - 1].ljust(size, b"\0") + FILLED[size:]


def test_thread_comm_of_the_main_thread_is_the_process_name():
    assert threading.current_thread() is threading.main_thread()
    with open("/proc/self/comm", "rb") as f:
        assert thread_comm() == f.read().rstrip(b"\n")


def test_get_current_comm_size_zero(engine):
    assert run_into_stack(engine, "get_current_comm", 0, COMM, mem_with(b"")) == (0, FILLED)


def test_get_current_comm_of_a_renamed_thread(engine):
    libc = ctypes.CDLL(None)
    got = {}

    def body():
        libc.prctl(15, b"bpf-worker-name-long", 0, 0, 0)      # PR_SET_NAME truncates to 15 bytes
        got["out"] = run_into_stack(engine, "get_current_comm", 16, COMM, mem_with(b""))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert got["out"] == (0, b"bpf-worker-name\0")


# ------------------------------------------------------------------------------------ unchecked JIT mode
UNCHECKED = Config(checked=False, insn_limit=None)


@pytest.mark.parametrize("helper", ["probe_read", "probe_read_str", "get_current_comm", "trace_printk"])
def test_helper_pointer_checks_hold_without_bounds_checks(engine, helper):
    """Config(checked=False) drops the JIT's checks of the program's own accesses, not the helpers'."""
    prog = Program.from_asm(f"lddw %r1, 8\nmov %r2, 8\nmov %r3, %r10\nadd %r3, -8\ncall {helper}\nexit",
                            UNCHECKED)
    with pytest.raises(RuntimeFault) as ei:
        VM(prog, engine, UNCHECKED).run()
    kind = "load" if helper == "trace_printk" else "store"
    assert ei.value.key() == (kind, call_pc(prog), 8, 8)


def test_probe_read_efault_without_bounds_checks(engine):
    r0 = VM(Program.from_asm(into_stack("probe_read", 12, SRC_ABS.format(addr=8)), UNCHECKED), engine,
            UNCHECKED).run(mem_with(PAYLOAD))
    assert r0 == EFAULT
