"""LPM trie map: longest-prefix match semantics (overlapping prefixes, /0, /32, /128), exact-prefix update
and delete, flags and errno, full map, creation rules, the kernel's get_next_key order, a random model
check from Python, and lookups/updates/deletes from programs in both engines (checked and unchecked)."""
from __future__ import annotations

import errno
import ipaddress
import random

import numpy as np
import pytest

from bpfjit import VM, Config
from bpfjit.errors import BPFError, ConfigError
from bpfjit.helpers import default_registry
from bpfjit.helpers.map_helpers import register_map_helpers
from bpfjit.maps import BPF_EXIST, BPF_NOEXIST, LpmTrieMap, MapError, create_map
from bpfjit.maps.layout import MAP_TYPES
from bpfjit.runtime import Runtime

CONFIGS = {"checked": Config(), "unchecked": Config(checked=False)}


def lpm(key_size=8, max_entries=64, **kw):
    return LpmTrieMap(key_size, 8, max_entries, value_type=np.uint64, **kw)


class Ref:
    """The obvious model: a dict of (prefixlen, masked data) -> (key as written, value)."""

    def __init__(self, data_size):
        self.bits = 8 * data_size
        self.d = {}

    def mask(self, plen, data: bytes):
        v = int.from_bytes(data, "big")
        return plen, v >> (self.bits - plen) if plen else 0

    def update(self, plen, data, value):
        self.d[self.mask(plen, data)] = ((plen, data), value)

    def delete(self, plen, data):
        return self.d.pop(self.mask(plen, data), None) is not None

    def lookup(self, plen, data):
        for ln in range(min(plen, self.bits), -1, -1):
            hit = self.d.get(self.mask(ln, data))
            if hit is not None:
                return hit[1]
        return None


# ---------------------------------------------------------------- semantics from Python
def test_overlapping_ipv4_prefixes():
    m = lpm()
    for net, v in [("0.0.0.0/0", 1), ("10.0.0.0/8", 2), ("10.1.0.0/16", 3), ("10.1.2.0/24", 4),
                   ("10.1.2.3/32", 5)]:
        m[net] = v
    assert [int(m[a]) for a in ("10.1.2.3", "10.1.2.4", "10.1.3.1", "10.2.0.0", "11.0.0.0", "255.255.255.255")] \
        == [5, 4, 3, 2, 1, 1]
    assert len(m) == 5
    assert m[(16, "10.1.2.3")] == 3                      # the key's own prefixlen bounds the match
    assert m[(0, "10.1.2.3")] == 1
    assert m.get((33, "10.1.2.3")) is None               # prefixlen > max: no match


def test_default_route_only_and_no_match():
    m = lpm()
    assert m.get("1.2.3.4") is None and "1.2.3.4" not in m
    m["0.0.0.0/0"] = 7
    assert m["1.2.3.4"] == 7 and m["0.0.0.0"] == 7 and "9.9.9.9" in m


def test_slash32_only_matches_itself():
    m = lpm()
    m["192.168.1.1/32"] = 9
    assert m["192.168.1.1"] == 9
    assert m.get("192.168.1.0") is None and m.get((31, "192.168.1.1")) is None


def test_ipv6_prefixes():
    m = lpm(key_size=20)
    m["::/0"] = 1
    m["2001:db8::/32"] = 2
    m["2001:db8:1::/48"] = 3
    m["2001:db8:1:2::/64"] = 4
    m["2001:db8:1:2::1/128"] = 5
    got = [int(m[a]) for a in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::", "2001:db8:2::",
                               "2001:db9::", "::1")]
    assert got == [5, 4, 3, 2, 1, 1]
    assert m.max_prefixlen == 128


def test_non_byte_aligned_prefixes():
    m = lpm()
    m["10.0.0.0/9"] = 1       # 10.0.0.0 - 10.127.255.255
    m["10.128.0.0/9"] = 2
    m["10.64.0.0/10"] = 3
    assert [int(m[a]) for a in ("10.1.0.0", "10.200.0.0", "10.100.0.0", "10.127.255.255")] == [1, 2, 3, 3]
    assert m.get("11.0.0.0") is None


def test_update_and_delete_exact_prefix():
    m = lpm()
    m[(24, "10.0.0.5")] = 1                     # trailing bits are ignored for matching ...
    m[(24, "10.0.0.0")] = 2                     # ... so this replaces the same prefix
    assert len(m) == 1 and m["10.0.0.77"] == 2
    assert list(m) == [(24, bytes([10, 0, 0, 0]))]   # the key as last written
    m["10.0.0.0/8"] = 3
    del m["10.0.0.0/24"]
    assert m["10.0.0.77"] == 3 and len(m) == 1
    with pytest.raises(KeyError):
        del m["10.0.0.0/24"]
    with pytest.raises(KeyError):
        del m["10.0.0.0/9"]                     # no such exact prefix (the /8 stays)
    assert m["10.0.0.1"] == 3
    with pytest.raises(MapError) as e:
        del m[(33, "10.0.0.0")]
    assert e.value.errno == errno.EINVAL
    assert m.lookup_exact("10.0.0.0/8") == 3 and m.lookup_exact("10.0.0.0/16") is None


def test_flags_and_errors():
    m = lpm()
    m.update("10.0.0.0/8", 1, BPF_NOEXIST)
    with pytest.raises(MapError) as e:
        m.update("10.0.0.0/8", 2, BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(MapError) as e:
        m.update("10.0.0.0/16", 2, BPF_EXIST)
    assert e.value.errno == errno.ENOENT
    m.update("10.0.0.0/8", 5, BPF_EXIST)
    assert m["10.9.9.9"] == 5
    for bad in (3, 1 << 40):
        with pytest.raises(MapError) as e:
            m.update("10.0.0.0/8", 1, bad)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(MapError) as e:
        m[(40, "10.0.0.0")] = 1
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        m[(8, b"12345")] = 1                       # data longer than the key's 4 bytes
    with pytest.raises(ValueError):
        m[(8, 1 << 40)] = 1


def test_full_map():
    m = lpm(max_entries=3)
    m["10.0.0.0/8"] = 1
    m["10.0.0.0/16"] = 2
    m["10.0.0.0/24"] = 3
    with pytest.raises(MapError) as e:
        m["10.0.0.0/32"] = 4
    assert e.value.errno == errno.ENOSPC and len(m) == 3
    m["10.0.0.0/16"] = 20                          # replacing an existing prefix still works
    del m["10.0.0.0/24"]
    m["10.0.0.0/32"] = 4
    assert [int(m[a]) for a in ("10.0.0.0", "10.0.0.1", "10.0.1.0", "10.1.0.0")] == [4, 20, 20, 1]


def test_clear():
    m = lpm()
    m["0.0.0.0/0"] = 1
    m["10.0.0.0/8"] = 2
    m.clear()
    assert len(m) == 0 and m.get("10.1.1.1") is None and list(m) == []
    m["10.0.0.0/8"] = 3
    assert m["10.1.1.1"] == 3


@pytest.mark.parametrize("args,kw,match", [
    ((4, 8, 4), {}, "key_size"),
    ((261, 8, 4), {}, "key_size"),
    ((8, 8, 4), {"flags": 0}, "BPF_F_NO_PREALLOC"),
    ((8, 8, 4), {"flags": 1 | 2}, "unsupported"),
    ((8, 0, 4), {}, "positive"),
    ((8, 8, 0), {}, "max_entries"),
])
def test_creation_rules(args, kw, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        create_map("lpm_trie", *args, **kw)


def test_creation_errors_are_bpf_errors():
    with pytest.raises(BPFError):
        LpmTrieMap(4, 8, 4)
    with pytest.raises(BPFError):
        LpmTrieMap(8, 8, 4, flags=0)


def test_create_map_and_type_code():
    m = create_map("BPF_MAP_TYPE_LPM_TRIE", 8, 4, 10, flags=1, name="routes")
    assert isinstance(m, LpmTrieMap) and MAP_TYPES["lpm_trie"] == 11 and m._field("TYPE") == 11
    m["10.0.0.0/8"] = 5
    assert m["10.0.0.1"] == (5).to_bytes(4, "little")
    assert create_map("lpm_trie", 260, 1, 1).max_prefixlen == 2048


# ---------------------------------------------------------------- get_next_key: the kernel's order
def trie_postorder(prefixes, bits):
    """Post-order walk of an explicit binary trie (child 0, child 1, node), as the kernel iterates."""
    root = {}
    for plen, v in prefixes:
        node = root
        for i in range(plen):
            node = node.setdefault((v >> (bits - 1 - i)) & 1, {})
        node["key"] = (plen, v)
    out = []

    def walk(node):
        for b in (0, 1):
            if b in node:
                walk(node[b])
        if "key" in node:
            out.append(node["key"])
    walk(root)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_iteration_order_is_the_kernels(seed):
    rng = random.Random(seed)
    m = lpm(key_size=6, max_entries=200)           # 16-bit data
    prefixes = set()
    for _ in range(rng.randint(1, 80)):
        plen = rng.randint(0, 16)
        v = rng.getrandbits(16) & (((1 << plen) - 1) << (16 - plen))
        prefixes.add((plen, v))
        m[(plen, v)] = plen
    order = [(p, int.from_bytes(d, "big")) for p, d in m]
    assert order == trie_postorder(prefixes, 16)
    # get_next_key chain: None -> first ... last -> None; a missing key restarts at the first
    chain, k = [], m.get_next_key()
    while k is not None:
        chain.append(k)
        k = m.get_next_key(k)
    assert chain == list(m)
    missing = next((p, v) for p in range(17) for v in range(0, 1 << 16, 1 << (16 - p) if p else 1 << 16)
                   if (p, v) not in prefixes)
    assert m.get_next_key(missing) == chain[0]


def test_get_next_key_empty():
    m = lpm()
    assert m.get_next_key() is None and m.get_next_key("10.0.0.0/8") is None


# ---------------------------------------------------------------- random model check
@pytest.mark.parametrize("key_size", [5, 8, 20])
def test_random_operations_match_model(key_size):
    rng = random.Random(key_size)
    ds = key_size - 4
    m = lpm(key_size=key_size, max_entries=300)
    ref = Ref(ds)
    bits = 8 * ds
    base = [rng.getrandbits(bits) for _ in range(6)]       # cluster prefixes so that they overlap

    def rand_key():
        plen = rng.randint(0, bits)
        v = rng.choice(base) ^ (rng.getrandbits(8) << rng.randrange(max(1, bits - 8)) if rng.random() < 0.5 else 0)
        return plen, (v & ((1 << bits) - 1)).to_bytes(ds, "big")

    for step in range(1500):
        op = rng.random()
        plen, data = rand_key()
        if op < 0.45:
            if ref.d.get(ref.mask(plen, data)) is None and len(ref.d) >= 300:
                continue
            m[(plen, data)] = step
            ref.update(plen, data, step)
        elif op < 0.6:
            existed = ref.delete(plen, data)
            if existed:
                del m[(plen, data)]
            else:
                with pytest.raises(KeyError):
                    del m[(plen, data)]
        else:
            lk = (bits, data) if rng.random() < 0.7 else (plen, data)
            got = m.get(lk)
            exp = ref.lookup(*lk)
            assert (None if got is None else int(got)) == exp, (step, lk)
    assert len(m) == len(ref.d)
    assert sorted((p, d) for p, d in m) == sorted(k for k, _ in ref.d.values())


# ---------------------------------------------------------------- from programs, both engines
@pytest.fixture(params=list(CONFIGS))
def rt(request):
    return Runtime(CONFIGS[request.param], helpers=register_map_helpers(default_registry().copy()))


LOOKUP4 = """
    ldxw %r2, [%r1+0]           # IPv4 address (network order) from mem
    stxw [%r10-4], %r2
    stw [%r10-8], 32            # prefixlen
    lddw %r1, map(routes)
    mov %r2, %r10
    add %r2, -8
    call map_lookup_elem
    jeq %r0, 0, +2
    ldxdw %r0, [%r0+0]
    exit
    mov %r0, 999
    exit
"""

LOOKUP6 = """
    ldxw %r2, [%r1+0]
    stxw [%r10-16], %r2
    ldxw %r2, [%r1+4]
    stxw [%r10-12], %r2
    ldxw %r2, [%r1+8]
    stxw [%r10-8], %r2
    ldxw %r2, [%r1+12]
    stxw [%r10-4], %r2
    stw [%r10-20], 128
    lddw %r1, map(routes)
    mov %r2, %r10
    add %r2, -20
    call map_lookup_elem
    jeq %r0, 0, +5
    ldxdw %r3, [%r0+0]
    add %r3, 1000               # values are writable through the pointer
    stxdw [%r0+0], %r3
    ldxdw %r0, [%r0+0]
    exit
    mov %r0, 999
    exit
"""


def test_program_lookup_ipv4(engine, rt):
    m = lpm(max_entries=16)
    rt.add_map(m, "routes")
    for net, v in [("0.0.0.0/0", 1), ("10.0.0.0/8", 2), ("10.1.0.0/16", 3), ("10.1.2.3/32", 5)]:
        m[net] = v
    vm = VM(rt.assemble(LOOKUP4), engine, rt.config, runtime=rt)
    addrs = ["10.1.2.3", "10.1.2.4", "10.9.0.0", "8.8.8.8"]
    assert [vm.run(ipaddress.IPv4Address(a).packed) for a in addrs] == [5, 3, 2, 1]
    del m["0.0.0.0/0"]
    assert vm.run(ipaddress.IPv4Address("8.8.8.8").packed) == 999
    recs = np.frombuffer(b"".join(ipaddress.IPv4Address(a).packed for a in addrs), np.uint8).reshape(4, 4).copy()
    assert vm.run_batch(recs).tolist() == [5, 3, 2, 999]


def test_program_lookup_ipv6_writes_value(engine, rt):
    m = LpmTrieMap(20, 8, 16, value_type=np.uint64)
    rt.add_map(m, "routes")
    m["2001:db8::/32"] = 1
    m["2001:db8::1/128"] = 2
    vm = VM(rt.assemble(LOOKUP6), engine, rt.config, runtime=rt)
    assert vm.run(ipaddress.IPv6Address("2001:db8::1").packed) == 1002
    assert vm.run(ipaddress.IPv6Address("2001:db8::5").packed) == 1001
    assert vm.run(ipaddress.IPv6Address("::1").packed) == 999
    assert m["2001:db8::1"] == 1002 and m["2001:db8::7"] == 1001


def test_program_update_and_delete(engine, rt):
    m = lpm(max_entries=2)
    rt.add_map(m, "routes")
    text = """
        ldxw %r6, [%r1+0]           # prefixlen
        ldxw %r7, [%r1+4]           # data
        ldxw %r8, [%r1+8]           # 0: update, 1: delete
        stxw [%r10-8], %r6
        stxw [%r10-4], %r7
        stdw [%r10-16], 77
        lddw %r1, map(routes)
        mov %r2, %r10
        add %r2, -8
        jeq %r8, 1, +5
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call map_update_elem
        exit
        call map_delete_elem
        exit
    """
    vm = VM(rt.assemble(text), engine, rt.config, runtime=rt)

    def call(plen, addr, op):
        mem = plen.to_bytes(4, "little") + ipaddress.IPv4Address(addr).packed + op.to_bytes(4, "little")
        r = vm.run(mem)
        return r - (1 << 64) if r >> 63 else r

    assert call(8, "10.0.0.0", 0) == 0
    assert call(16, "10.1.0.0", 0) == 0
    assert call(24, "10.1.1.0", 0) == -errno.ENOSPC
    assert call(33, "10.1.1.0", 0) == -errno.EINVAL
    assert m["10.1.9.9"] == 77 and m["10.2.0.0"] == 77 and len(m) == 2
    assert call(16, "10.1.0.0", 1) == 0
    assert call(16, "10.1.0.0", 1) == -errno.ENOENT
    assert call(40, "10.1.0.0", 1) == -errno.EINVAL
    assert len(m) == 1 and list(m) == [(8, bytes([10, 0, 0, 0]))]


def test_program_lookups_match_model(engine):
    rt = Runtime(Config(), helpers=register_map_helpers(default_registry().copy()))
    rng = random.Random(7)
    m = lpm(max_entries=200)
    rt.add_map(m, "routes")
    ref = Ref(4)
    for i in range(150):
        plen = rng.choice([0, 8, 12, 16, 20, 24, 28, 32])
        data = bytes([10, rng.randrange(4), rng.randrange(4), rng.randrange(256)])
        m[(plen, data)] = i
        ref.update(plen, data, i)
    addrs = [bytes([rng.choice([10, 10, 10, 11]), rng.randrange(4), rng.randrange(4), rng.randrange(256)])
             for _ in range(500)]
    vm = VM(rt.assemble(LOOKUP4), engine, rt.config, runtime=rt)
    got = vm.run_batch(np.frombuffer(b"".join(addrs), np.uint8).reshape(-1, 4).copy()).tolist()
    exp = [ref.lookup(32, a) for a in addrs]
    assert got == [999 if e is None else e for e in exp]
