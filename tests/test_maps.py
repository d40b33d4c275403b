"""The Python map API (bpfjit.maps): creation, key/value conversion, dict-like access, errno mapping, update
flags, full maps, LRU order, per-cpu values, ring buffers, perf event arrays, prog arrays and descriptor
lifetime. Programs using maps (both engines) are in test_map_helpers.py and test_tail_calls.py."""
from __future__ import annotations

import ctypes
import errno
import gc
import threading

import numpy as np
import pytest

from bpfjit import BPFError, Program
from bpfjit.maps import (BPF_ANY, BPF_EXIST, BPF_NOEXIST, ArrayMap, HashMap, LruHashMap, LruPercpuHashMap, MapError,
                         PercpuArrayMap, PercpuHashMap, PerfEventArrayMap, ProgArrayMap, QueueMap, RingBufMap,
                         StackMap, create_map, current_cpu, set_default_ncpus)
from bpfjit.maps import arena
from bpfjit.maps.lib import lib
from bpfjit.memory import PERM_RW
from bpfjit.runtime import Runtime


def k32(i: int) -> bytes:
    return i.to_bytes(4, "little")


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16), ("c", ctypes.c_uint16)]


# ---------------------------------------------------------------------------------------------- creation
@pytest.mark.parametrize("name, cls", [("array", ArrayMap), ("BPF_MAP_TYPE_HASH", HashMap),
                                       ("percpu_array", PercpuArrayMap), ("percpu_hash", PercpuHashMap),
                                       ("lru_hash", LruHashMap), ("lru_percpu_hash", LruPercpuHashMap)])
def test_create_map_key_value_types(name, cls):
    m = create_map(name, 4, 8, 16, name="m")
    assert type(m) is cls and (m.key_size, m.value_size, m.max_entries, m.name) == (4, 8, 16, "m")


def test_create_map_other_types():
    assert isinstance(create_map("ringbuf", 0, 0, 4096), RingBufMap)
    assert isinstance(create_map("prog_array", 4, 4, 8), ProgArrayMap)
    pe = create_map("perf_event_array", 4, 4, 3)
    assert isinstance(pe, PerfEventArrayMap) and pe.max_entries == 3


@pytest.mark.parametrize("args, match", [
    (("no_such_map", 4, 4, 4), "unknown map type"),
    (("queue", 4, 4, 4), "key_size 0"),
    (("ringbuf", 4, 0, 4096), "key_size and value_size 0"),
    (("ringbuf", 0, 0, 1000), "power of two"),
    (("prog_array", 8, 4, 4), "4-byte keys"),
    (("array", 8, 4, 4), "4-byte indexes"),
    (("hash", 4, 4, 0), "max_entries must be positive"),
    (("hash", 0, 4, 4), "sizes must be positive"),
])
def test_create_map_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        create_map(*args)


def test_sizes_from_types():
    m = HashMap(key_type=np.uint32, value_type=Pair, max_entries=4)
    assert (m.key_size, m.value_size) == (4, 8)
    with pytest.raises(ValueError, match="does not match"):
        HashMap(8, 8, 4, key_type=np.uint32)
    with pytest.raises(ValueError, match="key size is required"):
        HashMap(None, 8, 4)


# ---------------------------------------------------------------------------------------------- array maps
def test_array_starts_zeroed_and_round_trips():
    m = ArrayMap(4, 8, 4)
    assert len(m) == 4 and m[3] == bytes(8)
    m[1] = 0x1122334455667788
    assert m[1] == bytes.fromhex("8877665544332211")
    m[k32(2)] = b"abcdefgh"
    assert m[2] == b"abcdefgh"


def test_array_typed_values_and_zero_copy_view():
    m = ArrayMap(4, 8, 3, value_type=np.uint64)
    m[0] = 7
    assert m[0] == 7 and isinstance(m[0], np.uint64)
    view = m.values
    assert view.shape == (3,) and view.dtype == np.uint64
    view[2] = 99                       # written through the view, read through the map
    assert m[2] == 99
    m[1] = 5                           # and the other way round
    assert view[1] == 5
    assert view.ctypes.data == m.regions()[0].start


def test_array_uint8_view_skips_padding():
    m = ArrayMap(4, 3, 2)
    m[1] = b"xyz"
    assert m.values.shape == (2, 3)
    assert m.values[1].tobytes() == b"xyz"


def test_array_ctypes_value_type():
    m = ArrayMap(4, value_type=Pair, max_entries=2)
    m[0] = Pair(1, 2, 3)
    v = m[0]
    assert isinstance(v, Pair) and (v.a, v.b, v.c) == (1, 2, 3)
    m[1] = (4, 5, 6)
    assert m[1].c == 6


def test_array_errors():
    m = ArrayMap(4, 4, 2)
    with pytest.raises(KeyError):
        m[2]
    with pytest.raises(MapError) as ei:
        m[2] = 1
    assert ei.value.errno == errno.E2BIG and isinstance(ei.value, BPFError)
    with pytest.raises(MapError) as ei:
        del m[0]
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(MapError) as ei:
        m.update(0, 1, BPF_NOEXIST)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(MapError) as ei:
        m.update(0, 1, 3)
    assert ei.value.errno == errno.EINVAL
    m.update(1, 9, BPF_EXIST)
    assert m[1] == k32(9)


def test_array_iteration_and_next_key():
    m = ArrayMap(4, 4, 3, key_type=np.uint32)
    assert list(m) == [0, 1, 2]
    assert m.get_next_key() == 0 and m.get_next_key(1) == 2
    assert m.get_next_key(2) is None
    assert m.get_next_key(100) == 0            # the kernel restarts on an index past the end
    m[1] = 5
    assert [(int(k), v) for k, v in m.items()] == [(0, k32(0)), (1, k32(5)), (2, k32(0))]


def test_array_clear_and_direct_value():
    m = ArrayMap(4, 8, 2)
    m[0] = 1
    m[1] = 2
    m.clear()
    assert m[0] == m[1] == bytes(8)
    base = m.regions()[0].start
    assert m.direct_value_addr(0) == base and m.direct_value_addr(15) == base + 15
    assert m.direct_value_addr(16) is None and m.direct_value_addr(-1) is None
    assert m.regions()[0].perms == PERM_RW and m.regions()[0].size == 16


def test_percpu_array_values():
    m = PercpuArrayMap(4, 4, 2, ncpus=3, value_type=np.uint32)
    assert m[0] == [0, 0, 0]
    m[0] = [1, 2, 3]
    m[1] = 7                          # one value for every cpu
    assert m[0] == [1, 2, 3] and m[1] == [7, 7, 7]
    assert m.values.shape == (2, 3)
    assert m.values[0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="3 entries"):
        m[0] = [1, 2]


# ---------------------------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("key", [5, b"\x05\x00\x00\x00", np.uint32(5), np.array([5], dtype=np.uint32),
                                 ctypes.c_uint32(5), bytearray(k32(5)), memoryview(k32(5))])
def test_key_forms(key):
    m = HashMap(4, 4, 4)
    m[key] = 1
    assert m[5] == k32(1) and list(m) == [k32(5)]


def test_negative_ints_are_twos_complement():
    m = HashMap(4, 4, 4)
    m[-1] = -2
    assert m[b"\xff\xff\xff\xff"] == b"\xfe\xff\xff\xff"


@pytest.mark.parametrize("key, exc, match", [
    (b"abc", ValueError, "key must be 4 bytes, got 3"),
    (1 << 32, ValueError, "does not fit in 4 bytes"),
    (np.uint64(1), ValueError, "key must be 4 bytes, got 8"),
    ("abcd", TypeError, "key must be bytes"),
    (1.5, TypeError, "key must be bytes"),
])
def test_bad_keys(key, exc, match):
    m = HashMap(4, 4, 4)
    with pytest.raises(exc, match=match):
        m[key] = 1
    with pytest.raises(exc, match=match):
        m[key]


def test_bad_value_size():
    m = HashMap(4, 8, 4)
    with pytest.raises(ValueError, match="value must be 8 bytes, got 4"):
        m[1] = b"abcd"


def test_typed_keys_and_structured_values():
    dt = np.dtype([("x", np.uint32), ("y", np.float32)])
    m = HashMap(key_type=Pair, value_type=dt, max_entries=4)
    m[Pair(1, 2, 3)] = (7, 0.5)
    m[(4, 5, 6)] = np.array((8, 1.5), dtype=dt)
    got = {(k.a, k.b, k.c): (int(v["x"]), float(v["y"])) for k, v in m.items()}
    assert got == {(1, 2, 3): (7, 0.5), (4, 5, 6): (8, 1.5)}


# ---------------------------------------------------------------------------------------------- hash maps
def test_hash_basic_operations():
    m = HashMap(4, 8, 8, key_type=np.uint32, value_type=np.uint64)
    assert len(m) == 0 and list(m) == [] and m.get(1) is None and 1 not in m
    m[1] = 10
    m[2] = 20
    assert len(m) == 2 and m[1] == 10 and 2 in m and m.get(3, "x") == "x"
    del m[1]
    assert len(m) == 1 and 1 not in m
    with pytest.raises(KeyError):
        del m[1]
    with pytest.raises(KeyError):
        m[1]
    assert sorted(int(k) for k in m.keys()) == [2]


def test_hash_update_flags():
    m = HashMap(4, 4, 4)
    with pytest.raises(MapError) as ei:
        m.update(1, 1, BPF_EXIST)
    assert ei.value.errno == errno.ENOENT
    m.update(1, 1, BPF_NOEXIST)
    with pytest.raises(MapError) as ei:
        m.update(1, 2, BPF_NOEXIST)
    assert ei.value.errno == errno.EEXIST and "already exists" in str(ei.value)
    m.update(1, 3, BPF_EXIST)
    m.update(1, 4, BPF_ANY)
    assert m[1] == k32(4)
    with pytest.raises(MapError) as ei:
        m.update(1, 5, 7)
    assert ei.value.errno == errno.EINVAL


def test_hash_full():
    m = HashMap(4, 4, 3)
    for i in range(3):
        m[i] = i
    with pytest.raises(MapError) as ei:
        m[3] = 3
    assert ei.value.errno == errno.E2BIG and "map is full" in str(ei.value)
    m[2] = 22                          # replacing an existing key needs no room
    del m[0]
    m[3] = 3
    assert sorted(m.keys()) == [k32(i) for i in (1, 2, 3)]


@pytest.mark.parametrize("key_size", [1, 2, 3, 5, 7, 8, 12, 17, 64])
def test_hash_key_sizes(key_size):
    n = min(200, 1 << (8 * key_size))
    m = HashMap(key_size, 4, n)
    keys = [i.to_bytes(key_size, "little") for i in range(n)]
    for i, k in enumerate(keys):
        m[k] = i
    assert len(m) == n
    assert all(m[k] == k32(i) for i, k in enumerate(keys))
    assert sorted(m.keys()) == sorted(keys)
    for k in keys[::2]:
        del m[k]
    assert len(m) == n - len(keys[::2]) and sorted(m.keys()) == sorted(keys[1::2])


def test_hash_next_key_order_is_the_iteration_order():
    m = HashMap(4, 4, 64, key_type=np.uint32)
    for i in range(40):
        m[i * 7] = i
    order = list(m)
    assert sorted(int(k) for k in order) == [i * 7 for i in range(40)]
    assert m.get_next_key() == order[0]
    assert [m.get_next_key(k) for k in order[:-1]] == order[1:]
    assert m.get_next_key(order[-1]) is None
    assert m.get_next_key(1000) == order[0]     # a missing key restarts at the first


def test_hash_clear_and_reuse():
    m = HashMap(4, 4, 4)
    for i in range(4):
        m[i] = i
    m.clear()
    assert len(m) == 0 and list(m) == []
    for i in range(4):
        m[i + 10] = i
    assert len(m) == 4


def test_percpu_hash_values():
    m = PercpuHashMap(4, 4, 4, ncpus=2, value_type=np.int32)
    m[1] = [3, -4]
    m[2] = 5
    assert m[1] == [3, -4] and m[2] == [5, 5]
    assert m.items()[0][1] in ([3, -4], [5, 5])


# ---------------------------------------------------------------------------------------------- LRU
def test_lru_evicts_least_recently_updated():
    m = LruHashMap(4, 4, 3, key_type=np.uint32)
    for i in range(3):
        m[i] = i
    m[0] = 100              # an update counts as a use
    m[3] = 3                # full: evicts 1, the least recently used
    assert sorted(int(k) for k in m) == [0, 2, 3]
    m[1] = 1                # evicts 2
    assert sorted(int(k) for k in m) == [0, 1, 3]
    assert len(m) == 3


def test_lru_python_reads_do_not_count_as_use():
    m = LruHashMap(4, 4, 2, key_type=np.uint32)
    m[0] = 0
    m[1] = 1
    assert m[0] == k32(0)    # a Python read (like the kernel's syscall lookup) leaves the order
    m[2] = 2
    assert sorted(int(k) for k in m) == [1, 2]


def test_lru_percpu():
    m = LruPercpuHashMap(4, 4, 2, ncpus=2, key_type=np.uint32, value_type=np.uint32)
    m[0] = [1, 2]
    m[1] = [3, 4]
    m[2] = [5, 6]
    assert sorted(int(k) for k in m) == [1, 2] and m[2] == [5, 6]


# ---------------------------------------------------------------------------------------------- cpus
def test_current_cpu_is_stable_per_thread():
    here = current_cpu(1 << 20)
    assert current_cpu(1 << 20) == here
    seen = []
    t = threading.Thread(target=lambda: seen.append((current_cpu(1 << 20), current_cpu(1 << 20))))
    t.start()
    t.join()
    assert seen[0][0] == seen[0][1] != here
    assert 0 <= current_cpu() and current_cpu(3) == here % 3


def test_default_ncpus():
    from bpfjit.maps import lib as maplib
    before = maplib.NCPUS
    try:
        set_default_ncpus(3)
        assert PercpuArrayMap(4, 4, 1).ncpus == 3 and PerfEventArrayMap().max_entries == 3
        assert HashMap(4, 4, 1).ncpus == 1
    finally:
        set_default_ncpus(before)
    with pytest.raises(ValueError):
        set_default_ncpus(0)


# ---------------------------------------------------------------------------------------------- ring buffer
def test_ringbuf_output_and_drain():
    rb = RingBufMap(256, name="events")
    rb.output(b"one")
    rb.output(b"two!")
    rb.output(b"")
    assert rb.query("avail_data") == 16 + 16 + 8 and rb.query("ring_size") == 256
    assert rb.drain() == [b"one", b"two!", b""]
    assert rb.drain() == [] and rb.query() == 0
    assert rb.query("cons_pos") == rb.query("prod_pos") == 40
    assert rb.query(99) == 0


def test_ringbuf_full_and_wrap():
    rb = RingBufMap(64)
    rb.output(b"a" * 20)              # 32 bytes
    rb.output(b"b" * 8)               # 16 bytes, prod 48
    with pytest.raises(MapError) as ei:
        rb.output(b"c" * 20)          # needs 16 bytes of padding + 32: no room
    assert ei.value.errno == errno.EAGAIN and rb.dropped == 1
    assert list(rb) == [b"a" * 20, b"b" * 8]
    rb.output(b"c" * 20)              # wraps: padding record (discarded) then the record at offset 0
    assert rb.query("prod_pos") == 48 + 16 + 32
    assert rb.drain() == [b"c" * 20]
    with pytest.raises(MapError):
        rb.output(b"x" * 57)          # larger than the ring can ever hold
    with pytest.raises(MapError) as ei:
        rb.output(b"x", flags=4)
    assert ei.value.errno == errno.EINVAL


def test_ringbuf_and_perf_clear():
    rb = RingBufMap(64)
    rb.output(b"a")
    rb.clear()
    assert rb.drain() == [] and rb.query() == 0
    rb.output(b"b")
    assert rb.drain() == [b"b"]
    pe = PerfEventArrayMap(2, buf_size=64)
    pe.output(b"x", cpu=0)
    pe.output(b"y", cpu=1)
    pe.clear()
    assert pe.drain() == []


def test_ringbuf_region():
    rb = RingBufMap(128)
    (r,) = rb.regions()
    assert r.size == 128 and r.perms == PERM_RW


# ---------------------------------------------------------------------------------------------- perf events
def test_perf_event_array_output_and_drain():
    pe = PerfEventArrayMap(2, buf_size=64)
    pe.output(b"x", cpu=1)
    pe.output(b"yy", cpu=0)
    pe.output(b"zzz", cpu=1)
    assert pe.drain() == [(0, b"yy"), (1, b"x"), (1, b"zzz")]
    assert pe.drain() == []
    with pytest.raises(MapError) as ei:
        pe.output(b"q", cpu=2)
    assert ei.value.errno == errno.E2BIG
    for _ in range(2):
        pe.output(b"0123456789", cpu=0)       # 24 bytes each: a 3rd does not fit in 64
    for _ in range(2):
        with pytest.raises(MapError) as ei:
            pe.output(b"0123456789", cpu=0)
        assert ei.value.errno == errno.ENOSPC
    assert pe.lost == [2, 0] and len(pe.drain()) == 2


def test_perf_event_array_current_cpu():
    pe = PerfEventArrayMap(ncpus=64)
    pe.output(b"here")
    assert pe.drain() == [(current_cpu(64), b"here")]


# ---------------------------------------------------------------------------------------------- prog array
def test_prog_array_slots():
    pa = ProgArrayMap(4)
    prog = Program.from_asm("mov %r0, 1\nexit\n")
    assert len(pa) == 0
    pa[2] = prog
    assert pa[2] is prog and len(pa) == 1 and list(pa) == [2] and pa.items() == [(2, prog)]
    assert pa.program(2) is prog and pa.program(0) is None and pa.program(9) is None
    with pytest.raises(KeyError):
        pa[0]
    with pytest.raises(MapError) as ei:
        pa[4] = prog
    assert ei.value.errno == errno.E2BIG
    with pytest.raises(TypeError):
        pa[0] = b"not a program"
    del pa[2]
    with pytest.raises(KeyError):
        del pa[2]
    pa[1] = prog
    pa.clear()
    assert len(pa) == 0 and pa.regions() == []


# ---------------------------------------------------------------------------------------------- queue/stack
@pytest.mark.parametrize("cls, order", [(QueueMap, [1, 2, 3]), (StackMap, [3, 2, 1])])
def test_queue_stack_order(cls, order):
    m = cls(value_type=np.uint32, max_entries=3)
    assert len(m) == 0 and isinstance(create_map(cls.map_type, 0, 4, 2), cls)
    for v in (1, 2, 3):
        m.push(v)
    assert len(m) == 3 and m.peek() == order[0] and len(m) == 3
    assert [m.pop() for _ in range(3)] == order
    with pytest.raises(MapError) as ei:
        m.pop()
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(MapError):
        m.peek()


@pytest.mark.parametrize("cls, left", [(QueueMap, [2, 3, 4]), (StackMap, [4, 3, 2])])
def test_queue_stack_full(cls, left):
    m = cls(4, 3, value_type=np.uint32)
    for v in (1, 2, 3):
        m.push(v)
    with pytest.raises(MapError) as ei:
        m.push(4)
    assert ei.value.errno == errno.E2BIG
    m.push(4, BPF_EXIST)              # drops the oldest element
    assert [m.pop() for _ in range(3)] == left
    with pytest.raises(MapError) as ei:
        m.push(5, BPF_NOEXIST)
    assert ei.value.errno == errno.EINVAL
    for v in range(3):
        m.push(v)
    m.clear()
    assert len(m) == 0 and m.regions() == []


# ---------------------------------------------------------------------------------------------- lifetime
def test_descriptor_is_valid_while_the_map_lives():
    m = HashMap(4, 4, 4)
    addr = m.desc_addr
    assert arena.map_at(addr) is m and lib().valid(addr) == 1
    assert lib().valid(addr + 8) == 0 and lib().valid(0) == 0 and lib().valid(arena.ARENA_END) == 0
    del m
    gc.collect()
    assert arena.map_at(addr) is None and lib().valid(addr) == 0


def test_runtime_tables():
    rt = Runtime()
    a, h = ArrayMap(4, 4, 2, name="a"), HashMap(4, 4, 2, name="h")
    fa, fh = rt.add_map(a), rt.add_map(h)
    assert rt.map("a") is a and rt.map(fh) is h
    assert [r.start for r in rt.regions()] == [a.regions()[0].start, h.regions()[0].start]
    assert "HashMap 'h'" in repr(h)
