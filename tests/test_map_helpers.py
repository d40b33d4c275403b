"""Map helpers called by programs, in both engines: lookup/update/delete on every key/value map type, update
flags and errno results, full maps, LRU order, per-cpu copies, ring buffer and perf event output, the
checks of map and pointer arguments, and concurrent JIT runs on one hash map."""
from __future__ import annotations

import errno
import threading

import numpy as np
import pytest

from bpfjit import VM, Config
from bpfjit.program import assemble
from bpfjit.helpers import default_registry
from bpfjit.helpers.map_helpers import MAP_HELPERS, register_map_helpers
from bpfjit.maps import (ArrayMap, HashMap, LruHashMap, PercpuArrayMap, PercpuHashMap, PerfEventArrayMap,
                         QueueMap, RingBufMap, StackMap, current_cpu)
from bpfjit.runtime import Runtime

M64 = (1 << 64) - 1
CONFIGS = {"checked": Config(), "unchecked": Config(checked=False)}


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


@pytest.fixture(params=list(CONFIGS))
def rt(request):
    return Runtime(CONFIGS[request.param], helpers=register_map_helpers(default_registry().copy()))


@pytest.fixture
def checked_rt():
    """Pointer-argument checks are a checked-mode promise (unchecked JIT code trusts its arguments)."""
    return Runtime(CONFIGS["checked"], helpers=register_map_helpers(default_registry().copy()))


def run(engine, rt, text, mem=None, license="GPL"):
    """Assemble with the runtime's map names, run once, return r0 as a signed value."""
    prog = rt.assemble(text, license=license)
    return s64(VM(prog, engine, rt.config, runtime=rt).run(mem))


def key_on_stack(key: int, off: int = -4, reg: str = "%r2") -> str:
    return f"stw [%r10{off}], {key}\nmov {reg}, %r10\nadd {reg}, {off}\n"


def lookup(map_name: str, key: int) -> str:
    return f"lddw %r1, map({map_name})\n" + key_on_stack(key) + "call map_lookup_elem\n"


def update(map_name: str, key: int, value: int, flags: int) -> str:
    return (f"lddw %r1, map({map_name})\n" + key_on_stack(key) +
            f"lddw %r3, {value}\nstxdw [%r10-16], %r3\nmov %r3, %r10\nadd %r3, -16\nmov %r4, {flags}\n"
            "call map_update_elem\n")


def delete(map_name: str, key: int) -> str:
    return f"lddw %r1, map({map_name})\n" + key_on_stack(key) + "call map_delete_elem\n"


def test_registry():
    reg = register_map_helpers(default_registry().copy())
    assert {reg.names()[h.name] for h in MAP_HELPERS} == {1, 2, 3, 12, 25, 87, 88, 89, 130, 131, 132, 133, 134}
    assert reg.get(25).gpl_only and not reg.get(1).gpl_only
    assert reg.get(1).ret == "map_value_or_null" and reg.get(131).ret == "mem_or_null"


# ---------------------------------------------------------------------------------------------- arrays
def test_array_lookup_and_atomic_add(engine, rt):
    m = ArrayMap(4, 8, 4, name="arr", value_type=np.uint64)
    rt.add_map(m)
    m[2] = 40
    prog = lookup("arr", 2) + "jeq %r0, 0, +3\nmov %r1, 2\nlock add [%r0], %r1\nldxdw %r0, [%r0]\nexit\n"
    assert run(engine, rt, prog) == 42
    assert run(engine, rt, prog) == 44 and m[2] == 44


@pytest.mark.parametrize("key", [4, -1])
def test_array_lookup_out_of_range_is_null(engine, rt, key):
    rt.add_map(ArrayMap(4, 8, 4, name="arr"))
    assert run(engine, rt, lookup("arr", key) + "exit\n") == 0


def test_array_update_and_errors(engine, rt):
    m = ArrayMap(4, 8, 2, name="arr", value_type=np.uint64)
    rt.add_map(m)
    assert run(engine, rt, update("arr", 1, 0x1122334455667788, 0) + "exit\n") == 0
    assert m[1] == 0x1122334455667788
    assert run(engine, rt, update("arr", 2, 1, 0) + "exit\n") == -errno.E2BIG
    assert run(engine, rt, update("arr", 0, 1, 1) + "exit\n") == -errno.EEXIST
    assert run(engine, rt, update("arr", 0, 1, 3) + "exit\n") == -errno.EINVAL
    assert run(engine, rt, delete("arr", 0) + "exit\n") == -errno.EINVAL


def test_direct_map_value(engine, rt):
    m = ArrayMap(4, 8, 2, name="arr", value_type=np.uint64)
    rt.add_map(m)
    assert run(engine, rt, "lddw %r1, map_value(arr, 8)\nstdw [%r1], 77\nmov %r0, 0\nexit\n") == 0
    assert m[1] == 77


def test_map_objects_in_program_maps(engine, rt):
    m = ArrayMap(4, 8, 1, value_type=np.uint64)
    rt.add_map(m, name="counts")
    prog = assemble(lookup("counts", 0) + "jeq %r0, 0, +2\nstdw [%r0], 5\nmov %r0, 1\nexit\n",
                    helpers=rt.helpers.names(), maps=["counts"])
    prog.maps = [m]
    assert VM(prog, engine, rt.config, runtime=rt).run() == 1 and m[0] == 5


# ---------------------------------------------------------------------------------------------- hashes
@pytest.mark.parametrize("flags, present, expect", [
    (0, False, 0), (0, True, 0), (1, False, 0), (1, True, -errno.EEXIST), (2, False, -errno.ENOENT),
    (2, True, 0), (4, True, -errno.EINVAL)])
def test_hash_update_flags(engine, rt, flags, present, expect):
    m = HashMap(4, 8, 4, name="h", value_type=np.uint64)
    rt.add_map(m)
    if present:
        m[7] = 1
    assert run(engine, rt, update("h", 7, 99, flags) + "exit\n") == expect
    assert m.get(7) == (99 if expect == 0 else (1 if present else None))


def test_hash_lookup_delete(engine, rt):
    m = HashMap(4, 8, 4, name="h", value_type=np.uint64)
    rt.add_map(m)
    m[3] = 33
    read = lookup("h", 3) + "jeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
    assert run(engine, rt, read) == 33
    assert run(engine, rt, lookup("h", 4) + "exit\n") == 0
    assert run(engine, rt, delete("h", 3) + "exit\n") == 0
    assert len(m) == 0 and run(engine, rt, read) == 0
    assert run(engine, rt, delete("h", 3) + "exit\n") == -errno.ENOENT


def test_hash_full_from_program(engine, rt):
    m = HashMap(4, 8, 2, name="h")
    rt.add_map(m)
    m[1] = 1
    m[2] = 2
    assert run(engine, rt, update("h", 3, 3, 0) + "exit\n") == -errno.E2BIG
    assert run(engine, rt, update("h", 2, 3, 0) + "exit\n") == 0
    assert len(m) == 2


def test_lru_program_lookup_counts_as_use(engine, rt):
    m = LruHashMap(4, 8, 3, name="lru", key_type=np.uint32)
    rt.add_map(m)
    for i in range(3):
        m[i] = i
    assert run(engine, rt, lookup("lru", 0) + "exit\n") != 0      # 0 becomes the most recent
    assert run(engine, rt, update("lru", 3, 3, 0) + "exit\n") == 0   # evicts 1
    assert sorted(int(k) for k in m) == [0, 2, 3]
    assert run(engine, rt, update("lru", 4, 4, 1) + "exit\n") == 0   # NOEXIST also evicts: 2
    assert sorted(int(k) for k in m) == [0, 3, 4]


# ---------------------------------------------------------------------------------------------- per-cpu
def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_percpu_array_uses_the_threads_cpu(engine, rt):
    ncpus = 1 << 16                   # every thread its own copy
    m = PercpuArrayMap(4, 8, 1, name="pc", ncpus=ncpus, value_type=np.uint64)
    rt.add_map(m)
    prog = lookup("pc", 0) + "jeq %r0, 0, +2\nmov %r1, 1\nlock add [%r0], %r1\nexit\n"
    run(engine, rt, prog)
    run(engine, rt, prog)
    other = _in_thread(lambda: (run(engine, rt, prog), current_cpu(ncpus))[1])
    here = current_cpu(ncpus)
    values = m[0]
    assert other != here and values[here] == 2 and values[other] == 1 and sum(values) == 3


def test_percpu_hash_update_sets_one_copy(engine, rt):
    m = PercpuHashMap(4, 8, 4, name="ph", ncpus=8, value_type=np.uint64)
    rt.add_map(m)
    assert run(engine, rt, update("ph", 1, 5, 0) + "exit\n") == 0
    cpu = current_cpu(8)
    assert m[1] == [5 if c == cpu else 0 for c in range(8)]
    read = lookup("ph", 1) + "jeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
    assert run(engine, rt, read) == 5
    m[1] = [c + 10 for c in range(8)]
    assert run(engine, rt, read) == cpu + 10


# ---------------------------------------------------------------------------------------------- checks
def _check_cases(desc: int):
    key = key_on_stack(1)
    val = "mov %r3, %r10\nadd %r3, -16\nstdw [%r10-16], 0\nmov %r4, 0\n"
    return {
        "lookup": (f"lddw %r1, {desc}\n{key}call map_lookup_elem\nexit\n", 0),
        "update": (f"lddw %r1, {desc}\n{key}{val}call map_update_elem\nexit\n", -errno.EINVAL),
        "delete": (f"lddw %r1, {desc}\n{key}call map_delete_elem\nexit\n", -errno.EINVAL),
    }


@pytest.mark.parametrize("op", ["lookup", "update", "delete"])
@pytest.mark.parametrize("which", ["null", "garbage", "misaligned", "ringbuf", "freed"])
def test_not_a_map(engine, rt, op, which):
    h = HashMap(4, 8, 4, name="h")
    rb = RingBufMap(64)
    gone = HashMap(4, 8, 4)
    gone_addr = gone.desc_addr
    del gone
    rt.add_map(h)
    desc = {"null": 0, "garbage": 0x1234, "misaligned": h.desc_addr + 8, "ringbuf": rb.desc_addr,
            "freed": gone_addr}[which]
    text, expect = _check_cases(desc)[op]
    assert run(engine, rt, text) == expect


@pytest.mark.parametrize("op, expect", [("lookup", 0), ("update", -errno.EFAULT), ("delete", -errno.EFAULT)])
@pytest.mark.parametrize("where", [0x10, "past_stack"])
def test_unreadable_key(engine, checked_rt, op, expect, where):
    rt = checked_rt
    rt.add_map(HashMap(4, 8, 4, name="h"))
    key = "mov %r2, 0x10\n" if where == 0x10 else "mov %r2, %r10\nadd %r2, -2\n"   # 2 of 4 bytes readable
    val = "mov %r3, %r10\nadd %r3, -16\nstdw [%r10-16], 0\nmov %r4, 0\n"
    call = {"lookup": "map_lookup_elem", "update": "map_update_elem", "delete": "map_delete_elem"}[op]
    text = f"lddw %r1, map(h)\n{val}{key}call {call}\nexit\n"
    assert run(engine, rt, text) == expect


def test_unreadable_value(engine, checked_rt):
    rt = checked_rt
    m = HashMap(4, 8, 4, name="h")
    rt.add_map(m)
    text = "lddw %r1, map(h)\n" + key_on_stack(1) + "mov %r3, %r10\nadd %r3, -4\nmov %r4, 0\n" \
        "call map_update_elem\nexit\n"
    assert run(engine, rt, text) == -errno.EFAULT and len(m) == 0


# ---------------------------------------------------------------------------------------------- ring buffer
RB_RECORD = """
lddw %r1, map(rb)
mov %r2, 16
mov %r3, 0
call ringbuf_reserve
jeq %r0, 0, fail
lddw %r1, 0x1111111111111111
stxdw [%r0], %r1
stxdw [%r0+8], %r1
mov %r1, %r0
mov %r2, 0
call {commit}
exit
fail:
mov %r0, -1
exit
"""


def test_ringbuf_reserve_submit_discard(engine, rt):
    rb = RingBufMap(128, name="rb")
    rt.add_map(rb)
    assert run(engine, rt, RB_RECORD.format(commit="ringbuf_submit")) == 0
    assert run(engine, rt, RB_RECORD.format(commit="ringbuf_discard")) == 0
    assert run(engine, rt, RB_RECORD.format(commit="ringbuf_submit")) == 0
    assert rb.drain() == [b"\x11" * 16, b"\x11" * 16]
    for _ in range(5):              # 24 bytes each in 128: the 6th reserve fails
        assert run(engine, rt, RB_RECORD.format(commit="ringbuf_submit")) == 0
    assert run(engine, rt, RB_RECORD.format(commit="ringbuf_submit")) == -1
    assert len(rb.drain()) == 5


def test_ringbuf_busy_record_blocks_the_consumer(engine, rt):
    rb = RingBufMap(128, name="rb")
    rt.add_map(rb)
    reserve_only = "lddw %r1, map(rb)\nmov %r2, 8\nmov %r3, 0\ncall ringbuf_reserve\nexit\n"
    assert run(engine, rt, reserve_only) != 0
    rb.output(b"later")
    assert rb.drain() == []             # the never-submitted record stays busy
    assert rb.query("avail_data") == 16 + 16


def test_ringbuf_output_and_query(engine, rt):
    rb = RingBufMap(64, name="rb")
    rt.add_map(rb)
    out = "lddw %r1, map(rb)\nlddw %r2, 0x0807060504030201\nstxdw [%r10-8], %r2\nmov %r2, %r10\nadd %r2, -8\n" \
          "mov %r3, {size}\nmov %r4, {flags}\ncall ringbuf_output\nexit\n"
    assert run(engine, rt, out.format(size=5, flags=0)) == 0
    assert run(engine, rt, out.format(size=8, flags=1)) == 0          # wake-up flags are accepted
    assert run(engine, rt, out.format(size=8, flags=4)) == -errno.EINVAL
    query = "lddw %r1, map(rb)\nmov %r2, {q}\ncall ringbuf_query\nexit\n"
    assert [run(engine, rt, query.format(q=q)) for q in range(5)] == [32, 64, 0, 32, 0]
    assert run(engine, rt, out.format(size=8, flags=0)) == 0
    assert run(engine, rt, out.format(size=8, flags=0)) == 0                  # exactly full: 64 bytes
    assert run(engine, rt, out.format(size=1, flags=0)) == -errno.EAGAIN
    assert rb.drain() == [bytes(range(1, 6))] + [bytes(range(1, 9))] * 3 and rb.dropped == 1


@pytest.mark.parametrize("size, flags", [(57, 0), (8, 1), (1 << 40, 0)])
def test_ringbuf_reserve_failures(engine, rt, size, flags):
    rt.add_map(RingBufMap(64, name="rb"))
    assert run(engine, rt, f"lddw %r1, map(rb)\nlddw %r2, {size}\nmov %r3, {flags}\ncall ringbuf_reserve\n"
                           "exit\n") == 0


def test_ringbuf_submit_of_a_foreign_pointer_is_ignored(engine, rt):
    rb = RingBufMap(64, name="rb")
    rt.add_map(rb)
    text = "stdw [%r10-8], -1\nmov %r1, %r10\nmov %r2, 0\ncall ringbuf_submit\nldxdw %r0, [%r10-8]\nexit\n"
    assert run(engine, rt, text) == -1
    assert run(engine, rt, "mov %r1, 0\nmov %r2, 0\ncall ringbuf_discard\nexit\n") == 0


def test_ringbuf_helpers_check_the_map(engine, rt):
    rt.add_map(HashMap(4, 4, 4, name="h"))
    assert run(engine, rt, "lddw %r1, map(h)\nmov %r2, 8\nmov %r3, 0\ncall ringbuf_reserve\nexit\n") == 0
    assert run(engine, rt, "lddw %r1, map(h)\nmov %r2, 0\ncall ringbuf_query\nexit\n") == 0
    assert run(engine, rt, "lddw %r1, map(h)\nmov %r2, %r10\nmov %r3, 0\nmov %r4, 0\ncall ringbuf_output\n"
                           "exit\n") == -errno.EINVAL


# ---------------------------------------------------------------------------------------------- perf events
PERF = """
mov %r6, %r1
lddw %r1, 0x6867666564636261
stxdw [%r10-8], %r1
mov %r1, %r6
lddw %r2, map(pe)
lddw %r3, {flags}
mov %r4, %r10
add %r4, {off}
mov %r5, {size}
call perf_event_output
exit
"""


def test_perf_event_output(engine, rt):
    pe = PerfEventArrayMap(4, buf_size=64, name="pe", ncpus=4)
    rt.add_map(pe)
    assert run(engine, rt, PERF.format(flags=0xFFFFFFFF, off=-8, size=3)) == 0
    assert run(engine, rt, PERF.format(flags=2, off=-8, size=8)) == 0
    assert pe.drain() == sorted([(current_cpu(4), b"abc"), (2, b"abcdefgh")])
    assert run(engine, rt, PERF.format(flags=4, off=-8, size=1)) == -errno.E2BIG
    assert run(engine, rt, PERF.format(flags=1 << 32, off=-8, size=1)) == -errno.EINVAL
    for _ in range(4):              # 16 bytes each: cpu 0's 64-byte ring is then full
        assert run(engine, rt, PERF.format(flags=0, off=-8, size=8)) == 0
    assert run(engine, rt, PERF.format(flags=0, off=-8, size=8)) == -errno.ENOSPC and pe.lost[0] == 1


def test_perf_event_output_checks(engine, rt):
    rt.add_map(PerfEventArrayMap(2, name="pe"))
    rt.add_map(HashMap(4, 4, 4, name="h"))
    if not (rt.config.checked is False and engine == "jit"):
        assert run(engine, rt, PERF.format(flags=0, off=-4, size=8)) == -errno.EFAULT
    assert run(engine, rt, PERF.format(flags=0, off=-8, size=8).replace("map(pe)", "map(h)")) == -errno.EINVAL


def test_perf_event_output_is_gpl_only(engine, rt):
    from bpfjit import LoadError
    rt.add_map(PerfEventArrayMap(2, name="pe"))
    with pytest.raises(LoadError, match="GPL"):
        run(engine, rt, PERF.format(flags=0, off=-8, size=8), license="MIT")


# ---------------------------------------------------------------------------------------------- queue/stack
def push(value: int, flags: int = 0) -> str:
    return (f"lddw %r1, map(q)\nlddw %r2, {value}\nstxdw [%r10-8], %r2\nmov %r2, %r10\nadd %r2, -8\n"
            f"mov %r3, {flags}\ncall map_push_elem\nexit\n")


def pop(helper: str = "map_pop_elem", dst: str = "mov %r2, %r10\nadd %r2, -8\n") -> str:
    """r0 = the popped value, or the negative errno."""
    return (f"stdw [%r10-8], 0\nlddw %r1, map(q)\n{dst}call {helper}\njne %r0, 0, +1\n"
            "ldxdw %r0, [%r10-8]\nexit\n")


@pytest.mark.parametrize("cls, order", [(QueueMap, [10, 20, 30]), (StackMap, [30, 20, 10])])
def test_queue_stack_from_programs(engine, rt, cls, order):
    q = cls(8, 3, name="q", value_type=np.uint64)
    rt.add_map(q)
    for v in (10, 20, 30):
        assert run(engine, rt, push(v)) == 0
    assert run(engine, rt, push(40)) == -errno.E2BIG
    assert run(engine, rt, push(40, 1)) == -errno.EINVAL
    assert run(engine, rt, pop("map_peek_elem")) == order[0] and len(q) == 3
    assert [run(engine, rt, pop()) for _ in range(3)] == order
    assert run(engine, rt, pop()) == -errno.ENOENT
    assert run(engine, rt, pop("map_peek_elem")) == -errno.ENOENT
    assert run(engine, rt, push(50, 2)) == 0 and q.pop() == 50


def test_queue_helper_checks(engine, rt):
    rt.add_map(QueueMap(8, 2, name="q"))
    rt.add_map(HashMap(4, 8, 2, name="h"))
    assert run(engine, rt, push(1).replace("map(q)", "map(h)")) == -errno.EINVAL
    assert run(engine, rt, pop().replace("map(q)", "map(h)")) == -errno.EINVAL
    if rt.config.checked is False and engine == "jit":
        return
    assert run(engine, rt, push(7)) == 0
    assert run(engine, rt, pop(dst="mov %r2, %r10\nadd %r2, -4\n")) == -errno.EFAULT    # past the stack top
    text = "mov %r6, %r1\n" + pop(dst="mov %r2, %r6\n")                             # into the run's mem
    mem = np.zeros(8, dtype=np.uint8)
    vm = VM(rt.assemble(text), engine, rt.config, runtime=rt)
    assert s64(vm.run(mem, readonly=True)) == -errno.EFAULT and len(rt.map("q")) == 1
    assert vm.run(mem) == 0 and mem.view(np.uint64)[0] == 7 and len(rt.map("q")) == 0


# ---------------------------------------------------------------------------------------------- threads
COUNTER = """
mov %r6, %r1
""" + lookup("h", 0) + """
jne %r0, 0, have
stdw [%r10-16], 0
lddw %r1, map(h)
mov %r2, %r10
add %r2, -4
mov %r3, %r10
add %r3, -16
mov %r4, 1
call map_update_elem
""" + lookup("h", 0) + """
jeq %r0, 0, fail
have:
mov %r1, 1
lock add [%r0], %r1
lddw %r1, map(h)
mov %r2, %r6
mov %r3, %r6
add %r3, 8
mov %r4, 0
call map_update_elem
jne %r0, 0, fail
lddw %r1, map(h)
mov %r2, %r6
call map_lookup_elem
jeq %r0, 0, fail
ldxdw %r0, [%r0]
ldxdw %r1, [%r6+8]
jne %r0, %r1, fail
lddw %r1, map(h)
mov %r2, %r6
call map_delete_elem
jne %r0, 0, fail
exit
fail:
lddw %r1, map_value(fails, 0)
mov %r2, 1
lock add [%r1], %r2
mov %r0, 1
exit
"""


def test_concurrent_counter_and_updates(engine, rt):
    """4 threads run a program adding 1 to key 0's value (lock add) while inserting, reading and deleting
    their own key, in native loops (VM.bench: the GIL is released), while a Python thread churns other
    keys. No update is lost and no step fails (failures are counted in the `fails` map)."""
    h = HashMap(4, 8, 64, name="h", value_type=np.uint64)
    fails = ArrayMap(4, 8, 1, name="fails", value_type=np.uint64)
    rt.add_map(h)
    rt.add_map(fails)
    vm = VM(rt.assemble(COUNTER), engine, rt.config, runtime=rt)
    chunks, per_chunk = (4, 50_000) if engine == "jit" else (4, 50)
    vm.bench(np.zeros(16, dtype=np.uint8), 0)       # compile the loop entry points before the threads start
    stop, start = threading.Event(), threading.Barrier(4)

    def worker(t):
        mem = np.zeros(2, dtype=np.uint64)
        mem[0] = 1000 + t
        start.wait()                                 # overlap the native loops as much as possible
        for i in range(chunks):
            mem[1] = i
            vm.bench(mem, per_chunk)

    def churn():
        i = 0
        while not stop.is_set():
            k = 2000 + i % 40
            h[k] = i
            del h[k]
            i += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    churner = threading.Thread(target=churn)
    churner.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    churner.join()
    assert fails[0] == 0
    assert h[0] == 4 * chunks * per_chunk and len(h) == 1
