"""Packet helpers in both engines: checksums (RFC 1624 incremental updates checked against a straightforward
Python checksum), skb load/store, XDP adjust_head/meta/tail into and past the head/tailroom, skb_change_tail,
redirects, hashes, cookies and clocks."""
from __future__ import annotations

import random
import struct
import time

import numpy as np
import pytest

from bpfjit import VM, Config, Program
from bpfjit.helpers import packet as P
from bpfjit.maps import ArrayMap
from bpfjit.progtypes import SK_BUFF_LAYOUT, XDP_ABORTED, XDP_REDIRECT
from bpfjit.runtime import Runtime

SKB = {n: off for n, off, _, _ in SK_BUFF_LAYOUT}
CHECKED = Config(safety="checked")
M64 = (1 << 64) - 1


def neg(e: int) -> int:
    return -e & M64


def inet_csum(data: bytes) -> int:
    """RFC 1071, the straightforward way."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_tcp(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", sport=1234, dport=80, payload=b"hello"):
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 512, 0, 0) + payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    struct.pack_into("!H", tcp, 16, inet_csum(pseudo + bytes(tcp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, 0, 64, 6, 0, src, dst))
    struct.pack_into("!H", ip, 10, inet_csum(bytes(ip)))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(ip) + bytes(tcp)


def tcp_ok(frame: bytes) -> bool:
    ip, tcp = frame[14:34], frame[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return inet_csum(ip) == 0 and inet_csum(pseudo + tcp) == 0


def vm_of(src, ptype, engine, runtime=None):
    prog = runtime.assemble(src, prog_type=ptype) if runtime else Program.from_asm(src, prog_type=ptype)
    return VM(prog, engine, CHECKED, runtime=runtime)


# ---------------------------------------------------------------- checksum arithmetic
def test_incremental_checksums_match_recomputation():
    rng = random.Random(7)
    for _ in range(300):
        hdr = bytearray(rng.randbytes(20))
        hdr[10:12] = b"\0\0"
        hdr[10:12] = inet_csum(bytes(hdr)).to_bytes(2, "big")
        size = rng.choice((2, 4))
        off = rng.randrange(0, 20 - size + 1, 2)
        if off <= 10 < off + size:
            continue
        old, new = bytes(hdr[off:off + size]), rng.randbytes(size)
        hdr[off:off + size] = new
        le = int.from_bytes(hdr[10:12], "little")
        got = P.csum_replace(le, int.from_bytes(old, "little"), int.from_bytes(new, "little"), size)
        hdr[10:12] = got.to_bytes(2, "little")
        assert inet_csum(bytes(hdr)) == 0
        # by a csum_diff: the same result
        hdr2 = bytearray(hdr)
        diff = P.csum_partial(bytes(~b & 0xFF for b in old.ljust(4, b"\0")) + new.ljust(4, b"\0"), 0)
        assert P.fold16(diff) == P.fold16(P.csum_add(sum(~w & 0xFFFF for w in struct.unpack("<2H", old.ljust(4, b"\0"))),
                                                     sum(struct.unpack("<2H", new.ljust(4, b"\0")))))
        assert inet_csum(bytes(hdr2)) == 0


CSUM_DIFF = """
    lddw r2, {a}
    stxdw [r10-8], r2
    lddw r2, {b}
    stxdw [r10-16], r2
    mov r1, r10
    add r1, -8
    mov r2, {fs}
    mov r3, r10
    add r3, -16
    mov r4, {ts}
    mov r5, {seed}
    call csum_diff
    exit"""


@pytest.mark.parametrize("fs, ts, seed", [(8, 8, 0), (4, 8, 0x1234), (0, 8, 0), (8, 0, 5), (0, 0, 9)])
def test_csum_diff(engine, fs, ts, seed):
    a, b = 0x1122334455667788, 0x0102A0B0C0D0E0F0
    vm = vm_of(CSUM_DIFF.format(a=a, b=b, fs=fs, ts=ts, seed=seed), "sched_cls", engine)
    got = vm.run(b"\0" * 20)
    old, new = a.to_bytes(8, "little")[:fs], b.to_bytes(8, "little")[:ts]
    words = [~w & 0xFFFF for w in struct.unpack(f"<{fs // 2}H", old)] + list(struct.unpack(f"<{ts // 2}H", new))
    s = sum(words) + (seed & 0xFFFF) + (seed >> 16)
    assert got <= 0xFFFFFFFF and P.fold16(got) == P.fold16(s)
    assert got == VM(vm.program, "interp", CHECKED).run(b"\0" * 20)


def test_csum_diff_sizes_refused(engine):
    vm = vm_of(CSUM_DIFF.format(a=1, b=2, fs=3, ts=8, seed=0), "xdp", engine)
    assert vm.run(b"\0" * 20) == neg(22)


L3 = """
    mov r6, r1
    ldxw r2, [r6+{data}]
    ldxw r3, [r6+{end}]
    mov r4, r2
    add r4, 54
    jgt r4, r3, out
    ldxw r7, [r2+30]
    mov r8, {new}
    stxw [r2+30], r8
    mov r1, r6
    mov r2, 24
    mov r3, r7
    mov r4, r8
    mov r5, 4
    call l3_csum_replace
    jne r0, 0, out
    mov r1, r6
    mov r2, 50
    mov r3, r7
    mov r4, r8
    mov r5, {l4flags}
    call l4_csum_replace
out:
    exit"""


def test_l3_and_l4_csum_replace_rewrite_the_destination(engine):
    frame = ipv4_tcp()
    assert tcp_ok(frame)
    new = int.from_bytes(b"\xc0\xa8\x01\x63", "little")                  # 192.168.1.99 in memory order
    vm = vm_of(L3.format(data=SKB["data"], end=SKB["data_end"], new=new, l4flags=P.BPF_F_PSEUDO_HDR | 4),
               "sched_cls", engine)
    assert list(vm.run_packets([frame, frame])) == [0, 0]
    out = bytes(vm.last_packets[0])
    assert out[30:34] == b"\xc0\xa8\x01\x63" and tcp_ok(out) and out == ipv4_tcp(dst=b"\xc0\xa8\x01\x63")


def test_l4_csum_replace_port_and_errors(engine):
    frame = ipv4_tcp(dport=80)
    src = """
    mov r6, r1
    ldxw r2, [r6+{data}]
    ldxw r3, [r6+{end}]
    mov r4, r2
    add r4, 54
    jgt r4, r3, out
    ldxh r7, [r2+36]
    mov r8, 0x901f
    stxh [r2+36], r8
    mov r1, r6
    mov r2, {off}
    mov r3, r7
    mov r4, r8
    mov r5, {flags}
    call l4_csum_replace
out:
    exit""".replace("{data}", str(SKB["data"])).replace("{end}", str(SKB["data_end"]))
    vm = vm_of(src.format(off=50, flags=2), "sched_cls", engine)
    assert vm.run(frame) == 0 and tcp_ok(bytes(vm.last_mem)) and bytes(vm.last_mem) == ipv4_tcp(dport=8080)
    assert vm_of(src.format(off=51, flags=2), "sched_cls", engine).run(frame) == neg(14)      # odd offset
    assert vm_of(src.format(off=500, flags=2), "sched_cls", engine).run(frame) == neg(14)     # out of packet
    assert vm_of(src.format(off=50, flags=3), "sched_cls", engine).run(frame) == neg(22)      # field size 3
    assert vm_of(src.format(off=50, flags=0x1000), "sched_cls", engine).run(frame) == neg(22)


def test_l3_csum_replace_by_diff(engine):
    """cilium's pattern: csum_diff of the old and new address, then l3_csum_replace(..., 0, diff, 0)."""
    frame = ipv4_tcp()
    new = b"\x0a\x63\x63\x63"
    src = f"""
    mov r6, r1
    ldxw r2, [r6+{SKB['data']}]
    ldxw r3, [r6+{SKB['data_end']}]
    mov r4, r2
    add r4, 34
    jgt r4, r3, out
    ldxw r7, [r2+30]
    stxw [r10-8], r7
    mov r8, {int.from_bytes(new, 'little')}
    stxw [r10-16], r8
    stxw [r2+30], r8
    mov r1, r10
    add r1, -8
    mov r2, 4
    mov r3, r10
    add r3, -16
    mov r4, 4
    mov r5, 0
    call csum_diff
    mov r4, r0
    mov r1, r6
    mov r2, 24
    mov r3, 0
    mov r5, 0
    call l3_csum_replace
out:
    exit"""
    vm = vm_of(src, "sched_act", engine)
    assert vm.run(frame) == 0
    out = bytes(vm.last_mem)
    assert out[30:34] == new and inet_csum(out[14:34]) == 0


# ---------------------------------------------------------------- skb bytes
def test_skb_load_and_store_bytes(engine):
    src = """
    mov r6, r1
    mov r2, {off}
    mov r3, r10
    add r3, -8
    mov r4, 4
    call skb_load_bytes
    jne r0, 0, out
    mov r1, r6
    mov r2, 0
    mov r3, r10
    add r3, -8
    mov r4, 4
    mov r5, {flags}
    call skb_store_bytes
    jne r0, 0, out
    ldxw r0, [r10-8]
out:
    exit"""
    frame = bytes(range(40))
    vm = vm_of(src.format(off=12, flags=0), "sched_cls", engine)
    assert vm.run(frame) == int.from_bytes(frame[12:16], "little")
    assert bytes(vm.last_mem) == frame[12:16] + frame[4:]
    assert vm_of(src.format(off=37, flags=0), "sched_cls", engine).run(frame) == neg(14)
    assert vm_of(src.format(off=12, flags=4), "sched_cls", engine).run(frame) == neg(22)
    load_only = "mov r2, 36\nmov r3, r10\nadd r3, -8\nmov r4, 4\ncall skb_load_bytes\nldxw r0, [r10-8]\nexit"
    assert vm_of(load_only, "socket_filter", engine).run(frame) == int.from_bytes(frame[36:40], "little")
    assert vm_of(load_only.replace("36", "37"), "cgroup_skb", engine).run(frame) == 0        # zeroed


def test_skb_pull_data_and_change_tail(engine):
    src = f"""
    mov r6, r1
    mov r2, {{pull}}
    call skb_pull_data
    jne r0, 0, out
    mov r1, r6
    mov r2, {{tail}}
    mov r3, {{flags}}
    call skb_change_tail
    jne r0, 0, out
    ldxw r0, [r6+{SKB['len']}]
out:
    exit"""
    frame = bytes(range(1, 61))
    vm = vm_of(src.format(pull=60, tail=20, flags=0), "sched_cls", engine)
    assert list(vm.run_packets([frame, frame])) == [20, 20]
    assert [bytes(p) for p in vm.last_packets] == [frame[:20]] * 2
    vm = vm_of(src.format(pull=0, tail=70, flags=0), "sched_cls", engine)
    assert vm.run(frame) == 70 and bytes(vm.last_mem) == frame + bytes(10)
    assert vm_of(src.format(pull=61, tail=20, flags=0), "sched_cls", engine).run(frame) == neg(12)
    assert vm_of(src.format(pull=0, tail=20, flags=1), "sched_cls", engine).run(frame) == neg(22)
    assert vm_of(src.format(pull=0, tail=10, flags=0), "sched_cls", engine).run(frame) == neg(22)    # < 14
    assert vm_of(src.format(pull=0, tail=60 + 257, flags=0), "sched_cls", engine).run(frame) == neg(12)


# ---------------------------------------------------------------- XDP adjust helpers
ADJUST_HEAD = """
    mov r6, r1
    mov r2, {delta}
    call xdp_adjust_head
    jne r0, 0, out
    ldxw r2, [r6+0]
    ldxw r3, [r6+4]
    mov r4, r2
    add r4, 1
    jgt r4, r3, out
    stb [r2+0], 0xab
    mov r0, r3
    sub r0, r2
out:
    exit"""


def test_xdp_adjust_head_into_and_past_the_headroom(engine):
    frame = bytes(range(1, 31))
    vm = vm_of(ADJUST_HEAD.format(delta=-14), "xdp", engine)
    assert list(vm.run_packets([frame, frame[:20]])) == [44, 34]
    assert bytes(vm.last_packets[0]) == b"\xab" + bytes(13) + frame
    most = -(256 - P.XDP_FRAME_SIZE)
    assert vm_of(ADJUST_HEAD.format(delta=most), "xdp", engine).run(frame) == 30 - most
    assert vm_of(ADJUST_HEAD.format(delta=most - 1), "xdp", engine).run(frame) == neg(22)
    vm = vm_of(ADJUST_HEAD.format(delta=16), "xdp", engine)             # shrink: 14 bytes must stay
    assert vm.run(frame) == 14 and bytes(vm.last_mem) == b"\xab" + frame[17:]
    assert vm_of(ADJUST_HEAD.format(delta=17), "xdp", engine).run(frame) == neg(22)


def test_xdp_adjust_tail(engine):
    src = """
    mov r6, r1
    mov r2, {delta}
    call xdp_adjust_tail
    jne r0, 0, out
    ldxw r2, [r6+0]
    ldxw r3, [r6+4]
    mov r0, r3
    sub r0, r2
out:
    exit"""
    frame = bytes(range(1, 41))
    vm = vm_of(src.format(delta=-10), "xdp", engine)
    assert vm.run(frame) == 30 and bytes(vm.last_mem) == frame[:30]
    vm = vm_of(src.format(delta=16), "xdp", engine)
    assert vm.run(frame) == 56 and bytes(vm.last_mem) == frame + bytes(16)
    assert vm_of(src.format(delta=256), "xdp", engine).run(frame) == 296
    assert vm_of(src.format(delta=257), "xdp", engine).run(frame) == neg(22)
    assert vm_of(src.format(delta=-27), "xdp", engine).run(frame) == neg(22)


def test_xdp_adjust_meta(engine):
    src = """
    mov r6, r1
    mov r2, {delta}
    call xdp_adjust_meta
    jne r0, 0, out
    ldxw r2, [r6+8]
    ldxw r3, [r6+0]
    mov r4, r2
    add r4, 4
    jgt r4, r3, out
    stw [r2+0], 0x11223344
    ldxw r0, [r2+0]
out:
    exit"""
    vm = vm_of(src.format(delta=-8), "xdp", engine)
    assert list(vm.run_packets([b"\0" * 20] * 2)) == [0x11223344] * 2
    assert list(vm.last_run.meta_lengths()) == [8, 8] and [bytes(p) for p in vm.last_packets] == [b"\0" * 20] * 2
    assert vm_of(src.format(delta=-36), "xdp", engine).run(b"\0" * 20) == neg(13)
    assert vm_of(src.format(delta=-6), "xdp", engine).run(b"\0" * 20) == neg(13)
    assert vm_of(src.format(delta=4), "xdp", engine).run(b"\0" * 20) == neg(22)
    assert vm_of(src.format(delta=-(256 - P.XDP_FRAME_SIZE) - 4), "xdp", engine).run(b"\0" * 20) == neg(22)
    # meta read past data faults: the region is [data_meta, data_end)
    assert vm_of("ldxw r2, [r1+8]\nldxb r0, [r2+0]\nexit", "xdp", engine).run(b"\7" * 20) == 7


# ---------------------------------------------------------------- redirects, hashes, cookies, clocks
def test_redirect(engine):
    xdp = vm_of("mov r1, {ifi}\nmov r2, {flags}\ncall redirect\nexit".format(ifi=5, flags=0), "xdp", engine)
    assert list(xdp.run_packets([b"\0" * 20] * 2)) == [XDP_REDIRECT] * 2
    assert xdp.redirects == {0: ("ifindex", 5, 0), 1: ("ifindex", 5, 0)}
    assert vm_of("mov r1, 5\nmov r2, 1\ncall redirect\nexit", "xdp", engine).run(b"\0" * 20) == XDP_ABORTED
    tc = vm_of("mov r1, 3\nmov r2, 1\ncall redirect\nexit", "sched_cls", engine)
    assert tc.run(b"\0" * 20) == 7 and tc.redirects == {0: ("ifindex", 3, 1)}
    assert vm_of("mov r1, 3\nmov r2, 2\ncall redirect\nexit", "sched_cls", engine).run(b"\0" * 20) == 2


def test_redirect_map(engine):
    rt = Runtime(CHECKED)
    rt.add_map(ArrayMap(4, 4, 4, name="ports"))
    src = "lddw r1, map(ports)\nmov r2, {key}\nmov r3, {flags}\ncall redirect_map\nexit"
    vm = vm_of(src.format(key=2, flags=0), "xdp", engine, rt)
    assert vm.run(b"\0" * 20) == XDP_REDIRECT and vm.redirects == {0: ("map", "ports", 2)}
    vm = vm_of(src.format(key=9, flags=2), "xdp", engine, rt)
    assert vm.run(b"\0" * 20) == 2 and vm.redirects == {}


def test_hash_cookie_and_clocks(engine):
    frames = [ipv4_tcp(sport=1), ipv4_tcp(sport=2), ipv4_tcp(sport=1, payload=b"other"), b"\0" * 10]
    h = vm_of(f"mov r6, r1\ncall get_hash_recalc\nldxw r1, [r6+{SKB['hash']}]\njne r0, r1, bad\nexit\n"
              "bad:\nmov r0, 0\nexit", "sched_cls", engine)
    got = list(h.run_packets(frames))
    assert all(got) and got[0] == got[2] != got[1]               # the flow's 5-tuple, not the payload
    assert got == list(VM(h.program, "interp", CHECKED).run_packets(frames))
    cookie = vm_of("call get_socket_cookie\nexit", "socket_filter", engine)
    assert list(cookie.run_packets(frames)) == [1, 2, 3, 4]
    t0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    boot = vm_of("call ktime_get_boot_ns\nexit", "xdp", engine).run(b"\0" * 20)
    jif = vm_of("call jiffies64\nexit", "xdp", engine).run(b"\0" * 20)
    t1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert t0 <= boot <= t1 and t0 * 250 // 10**9 <= jif <= t1 * 250 // 10**9


def test_helpers_need_the_context(engine):
    from bpfjit.errors import RuntimeFault
    with pytest.raises(RuntimeFault) as e:
        vm_of("mov r1, r10\ncall get_socket_cookie\nexit", "socket_filter", engine).run(b"\0" * 20)
    assert e.value.kind == "helper" and e.value.pc == 1
    assert np.array_equal(vm_of("mov r0, 1\nexit", "xdp", engine).run_packets([]), np.zeros(0, np.uint64))


def test_csum_diff_unreadable_source_faults(engine):
    from bpfjit.errors import RuntimeFault
    vm = vm_of("mov r1, 16\nmov r2, 4\nmov r3, 0\nmov r4, 0\nmov r5, 0\ncall csum_diff\nexit", "xdp", engine)
    with pytest.raises(RuntimeFault) as e:
        vm.run(b"\0" * 20)
    assert (e.value.kind, e.value.pc, e.value.addr, e.value.size) == ("load", 5, 16, 4)
    if engine == "jit":          # the native twin, not a callback into Python
        assert vm.engine._plan.entries[("call", 28)][0] == "native"


def test_tail_call_target_moves_the_bounds(engine):
    """A tail-call target that calls xdp_adjust_head: the entry program's run leaves headroom and both
    engines see the moved packet region."""
    from bpfjit.maps import ProgArrayMap
    rt = Runtime(CHECKED)
    jmp = ProgArrayMap(2, name="jmp")
    rt.add_map(jmp)
    target = rt.assemble("mov r6, r1\nmov r2, -2\ncall xdp_adjust_head\nldxw r2, [r6+0]\nldxh r0, [r2+0]\n"
                         "exit", prog_type="xdp")
    jmp[0] = target
    vm = vm_of("lddw r2, map(jmp)\nmov r3, 0\ncall tail_call\nmov r0, 99\nexit", "xdp", engine, rt)
    assert list(vm.run_packets([b"\1\2" * 10, b"\3" * 30])) == [0, 0]
    assert [bytes(p)[:3] for p in vm.last_packets] == [b"\0\0\1", b"\0\0\3"]


@pytest.mark.parametrize("cls", ["DevMap", "CpuMap", "XskMap", "DevMapHash"])
def test_redirect_map_targets(engine, cls):
    from bpfjit import maps
    rt = Runtime(CHECKED)
    m = getattr(maps, cls)(4, 4, 8, name="tx")
    rt.add_map(m)
    m[3] = 7                        # slot 3 -> ifindex / cpu queue / socket 7
    src = "lddw r1, map(tx)\nmov r2, {key}\nmov r3, 2\ncall redirect_map\nexit"
    vm = vm_of(src.format(key=3), "xdp", engine, rt)
    assert list(vm.run_packets([b"\0" * 20] * 2)) == [XDP_REDIRECT] * 2
    assert vm.redirects == {0: (m.map_type, "tx", 3, 7), 1: (m.map_type, "tx", 3, 7)}
    vm = vm_of(src.format(key=1), "xdp", engine, rt)             # empty slot: the flags' verdict (XDP_PASS)
    assert vm.run(b"\0" * 20) == 2 and vm.redirects == {}
    vm = vm_of(src.format(key=100), "xdp", engine, rt)
    assert vm.run(b"\0" * 20) == 2
    assert maps.create_map(m.map_type, 4, 4, 2).map_type == m.map_type
