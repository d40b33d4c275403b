"""Packet program types (socket_filter, xdp, sched_cls, sched_act, cgroup_skb) in both engines: context fields
and their load-time rules, the context rewrite (data / data_end / data_meta), packet bounds at every edge,
return values, LD_ABS / LD_IND with SKF offsets, run_packets input forms and modified packets."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from bpfjit import VM, Config, Program
from bpfjit.errors import ConfigError, LoadError, RuntimeFault
from bpfjit.pcap import Packets
from bpfjit.progtypes import (PACKET_TYPES, PROG_TYPES, SK_BUFF_LAYOUT, XDP_DROP, XDP_MD_LAYOUT, XDP_PASS,
                              prog_type)

SKB = {n: off for n, off, _, _ in SK_BUFF_LAYOUT}
XDP = {n: off for n, off, _, _ in XDP_MD_LAYOUT}
CHECKED = Config(safety="checked")


def eth_ipv4_tcp(dport=80, sport=1234, payload=b"", dst_mac=b"\x02" * 6):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + len(payload), 1, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x02, 1024, 0, 0)
    return dst_mac + b"\x04" * 6 + b"\x08\x00" + ip + tcp + payload


def vm_of(src, ptype, engine, config=CHECKED, **kw):
    return VM(Program.from_asm(src, prog_type=ptype), engine, config, **kw)


def test_packet_types_are_rows():
    for name in ("socket_filter", "xdp", "sched_cls", "sched_act", "cgroup_skb"):
        t = prog_type(name)
        assert t is PROG_TYPES[name] is PACKET_TYPES[name] and t.packet in ("skb", "xdp")
        assert t.kctx_size > t.ctx_size and t.helpers is not None
    assert prog_type("xdp").ctx_size == 24 and prog_type("sched_cls").ctx_size == 192
    kinds = {f.name: f.kind for f in prog_type("xdp").fields}
    assert (kinds["data"], kinds["data_end"], kinds["data_meta"]) == ("pkt", "pkt_end", "pkt_meta")


# ---------------------------------------------------------------- context fields
@pytest.mark.parametrize("ptype", ["socket_filter", "sched_cls", "sched_act", "cgroup_skb"])
def test_skb_len_and_ifindex(engine, ptype):
    vm = vm_of(f"ldxw r0, [r1+{SKB['len']}]\nldxw r2, [r1+{SKB['ifindex']}]\nlsh r2, 32\nor r0, r2\nexit",
               ptype, engine)
    out = vm.run_packets([b"", b"\0" * 60, b"\1" * 1500])
    assert list(out) == [(1 << 32) | n for n in (0, 60, 1500)]


def test_skb_protocol_and_pkt_type(engine):
    src = f"ldxw r0, [r1+{SKB['protocol']}]\nldxw r2, [r1+{SKB['pkt_type']}]\nlsh r2, 32\nor r0, r2\nexit"
    vm = vm_of(src, "socket_filter", engine)
    pkts = [eth_ipv4_tcp(), eth_ipv4_tcp(dst_mac=b"\xff" * 6), eth_ipv4_tcp(dst_mac=b"\x01\0\x5e\0\0\1"),
            b"\0" * 13, b"\xff" * 5]
    got = [(int(v) & 0xFFFFFFFF, int(v) >> 32) for v in vm.run_packets(pkts)]
    # skb->protocol holds the EtherType in network order (0x0800 reads as 0x0008 in a little-endian u32)
    assert got == [(0x0008, 0), (0x0008, 1), (0x0008, 2), (0, 0), (0, 0)]


def test_cgroup_skb_sees_ip_packets(engine):
    vm = vm_of(f"ldxw r0, [r1+{SKB['protocol']}]\nexit", "cgroup_skb", engine)
    ip4, ip6 = eth_ipv4_tcp()[14:], b"\x60" + b"\0" * 39
    assert list(vm.run_packets([ip4, ip6, b"", b"\x10"])) == [0x0008, 0xDD86, 0, 0]


def test_tc_writes_context_fields_reset_per_packet(engine):
    src = f"""
    ldxw r2, [r1+{SKB['mark']}]
    add r2, 1
    stxw [r1+{SKB['mark']}], r2
    stw [r1+{SKB['cb'] + 8}], 7
    ldxw r0, [r1+{SKB['mark']}]
    ldxw r3, [r1+{SKB['cb'] + 8}]
    add r0, r3
    exit"""
    vm = vm_of(src, "sched_cls", engine)
    assert list(vm.run_packets([b"\0" * 20] * 4)) == [8] * 4


@pytest.mark.parametrize("ptype, src, what", [
    ("socket_filter", f"ldxw r2, [r1+{SKB['data']}]\nmov r0, 0\nexit", "data is not readable"),
    ("socket_filter", f"stw [r1+{SKB['mark']}], 1\nmov r0, 0\nexit", "mark is read-only"),
    ("sched_cls", f"stw [r1+{SKB['len']}], 1\nmov r0, 0\nexit", "len is read-only"),
    ("sched_cls", f"ldxdw r2, [r1+{SKB['data']}]\nmov r0, 0\nexit", "only a 4-byte load"),
    ("sched_cls", f"ldxh r2, [r1+{SKB['data_end']}]\nmov r0, 0\nexit", "only a 4-byte load"),
    ("sched_cls", "ldxw r2, [r1+200]\nmov r0, 0\nexit", "no field there"),
    ("sched_cls", f"ldxw r2, [r1+{SKB['mark'] + 2}]\nmov r0, 0\nexit", "misaligned"),
    ("xdp", f"stw [r1+{XDP['ingress_ifindex']}], 1\nmov r0, 0\nexit", "read-only"),
    ("xdp", "ldxw r2, [r1+24]\nmov r0, 0\nexit", "no field there"),
    ("cgroup_skb", f"ldxw r2, [r1+{SKB['data_meta']}]\nmov r0, 0\nexit", "not readable"),
    ("xdp", "mov r6, r1\nstxdw [r10-8], r6\nldxdw r7, [r10-8]\nstw [r7+0], 1\nmov r0, 0\nexit", "read-only"),
    ("sched_cls", f"lock add [r1+{SKB['mark']}], r2\nmov r0, 0\nexit", "atomic"),
    ("xdp", "ldxsw r2, [r1+0]\nmov r0, 0\nexit", "sign-extending"),
])
def test_context_rules_at_load(ptype, src, what, engine):
    with pytest.raises(LoadError, match=what) as e:
        vm_of(src, ptype, engine)
    assert e.value.pc is not None


def test_helpers_outside_the_type_refused():
    with pytest.raises(LoadError, match="may not call helper 44") as e:
        Program.from_asm("mov r2, 0\ncall 44\nexit", prog_type="sched_cls") and \
            VM(Program.from_asm("mov r2, 0\ncall 44\nexit", prog_type="sched_cls"))
    assert e.value.pc == 1
    with pytest.raises(LoadError, match="may not call helper 14"):
        VM(Program.from_asm("call 14\nexit", prog_type="xdp"))


# ---------------------------------------------------------------- packet pointers and bounds
XDP_BYTE_AT = """
    ldxw r2, [r1+0]
    ldxw r3, [r1+4]
    mov r4, r2
    add r4, {k}
    jgt r4, r3, out
    ldxb r0, [r2+{i}]
    exit
out:
    mov r0, 1000
    exit"""


@pytest.mark.parametrize("safety", ["checked", "auto"])
def test_xdp_bounds_checked_read(engine, safety):
    vm = vm_of(XDP_BYTE_AT.format(k=14, i=13), "xdp", engine, Config(safety=safety))
    pkts = [bytes(range(14)), bytes(range(13)), b"", bytes(range(100))]
    assert list(vm.run_packets(pkts)) == [13, 1000, 1000, 13]


def test_reads_past_data_end_fault(engine):
    """A program that skips the bounds check: reading data_end[-1] works, data_end[0] faults (checked)."""
    vm = vm_of("ldxw r2, [r1+0]\nldxb r0, [r2+9]\nexit", "xdp", engine)
    assert list(vm.run_packets([bytes(range(10)), bytes(range(20))])) == [9, 9]
    with pytest.raises(RuntimeFault) as e:
        vm.run_packets([bytes(range(20)), bytes(range(9)), bytes(range(30))])
    assert e.value.kind == "load" and e.value.record == 1 and e.value.pc == 1
    with pytest.raises(RuntimeFault) as e:        # before data: the headroom is not the packet
        vm_of("ldxw r2, [r1+0]\nldxb r0, [r2-1]\nexit", "xdp", engine).run(bytes(20))
    assert e.value.kind == "load"


def test_packet_writes_per_type(engine):
    write = "ldxw r2, [r1+{d}]\nldxw r3, [r1+{e}]\nmov r4, r2\nadd r4, 1\njgt r4, r3, out\nstb [r2+0], 0x5a\n" \
            "out:\nmov r0, 2\nexit"
    xdp = vm_of(write.format(d=XDP["data"], e=XDP["data_end"]), "xdp", engine)
    buf = np.zeros((3, 8), np.uint8)
    assert list(xdp.run_packets(buf)) == [2, 2, 2]
    assert (buf[:, 0] == 0x5A).all() and not buf[:, 1:].any()       # numpy input is run in place
    assert bytes(xdp.last_packets[1]) == b"\x5a" + bytes(7)
    cg = vm_of(write.format(d=SKB["data"], e=SKB["data_end"]), "cgroup_skb", engine)
    with pytest.raises(RuntimeFault) as e:      # cgroup_skb reads packets, never writes them
        cg.run(bytes(8))
    assert e.value.kind == "store"


def test_readonly_run_keeps_packets(engine):
    vm = vm_of("ldxw r2, [r1+0]\nstb [r2+0], 1\nmov r0, 2\nexit", "xdp", engine)
    buf = np.zeros((1, 4), np.uint8)
    with pytest.raises(RuntimeFault) as e:
        vm.run_packets(buf, readonly=True)
    assert e.value.kind == "store" and not buf.any()


def test_ctx_through_stack_and_subprogram(engine):
    """The rewrite follows the context pointer through a stack spill and into a subprogram."""
    src = """
    stxdw [r10-8], r1
    ldxdw r6, [r10-8]
    mov r1, r6
    call local sub
    exit
sub:
    ldxw r2, [r1+0]
    ldxw r3, [r1+4]
    mov r0, r3
    sub r0, r2
    exit"""
    vm = vm_of(src, "xdp", engine)
    assert list(vm.run_packets([b"", b"\0" * 5, b"\0" * 1514])) == [0, 5, 1514]
    assert vm.prepared.program.insns[6].opcode == 0x79          # rewritten to an 8-byte hidden-field load


def test_unknown_base_reads_the_low_bits(engine):
    """A load the analysis cannot attribute to the context is left alone: it reads the 32-bit field (the
    pointer's low bits), and a proven program with such a load runs checked."""
    src = "mov r2, r1\njeq r3, 0, skip\nmov r2, r10\nskip:\nldxw r0, [r2+0]\nexit"
    vm = vm_of(src, "xdp", engine, Config())
    out = vm.run_packets([b"\0" * 16])
    data = vm.last_run.base
    assert int(out[0]) == data & 0xFFFFFFFF and vm.safety == "checked"


# ---------------------------------------------------------------- return values and LD_ABS
def test_xdp_return_constants(engine):
    vm = vm_of(XDP_BYTE_AT.format(k=1, i=0).replace("1000", str(XDP_DROP)), "xdp", engine)
    assert list(vm.run_packets([bytes([XDP_PASS]), b""])) == [XDP_PASS, XDP_DROP]


def test_ld_abs_skf_offsets(engine):
    pkt = eth_ipv4_tcp(dport=8080)
    # ldabsb SKF_NET_OFF + 9 (IP protocol), ldabsh SKF_LL_OFF + 12 (EtherType), ldindh SKF_NET_OFF + 20 + 2
    src = """
    ldabsb -1048567
    mov r6, r0
    ldabsh -2097140
    lsh r6, 16
    or r6, r0
    mov r7, -1048556
    ldindh r7, 2
    lsh r6, 16
    or r0, r6
    exit"""
    for ptype in ("socket_filter", "sched_cls"):
        vm = vm_of(src, ptype, engine)
        assert vm.run(pkt) == (6 << 32) | (0x0800 << 16) | 8080
        assert vm.run(pkt[:30]) == 0                           # the TCP port is past the end: r0 = 0
    # other negative offsets still end the program with 0
    assert vm_of("ldabsb -3145728\nmov r0, 5\nexit", "socket_filter", engine).run(pkt) == 0


# ---------------------------------------------------------------- inputs and results
def test_run_packets_input_forms(engine):
    vm = vm_of(f"ldxw r0, [r1+{SKB['len']}]\nexit", "socket_filter", engine)
    frames = [b"a" * 3, b"", b"b" * 70]
    p = Packets.from_list(frames)
    expect = [3, 0, 70]
    assert list(vm.run_packets(p)) == expect
    assert list(vm.run_packets((p.data, p.offsets, p.lengths))) == expect
    assert list(vm.run_packets(frames)) == expect
    assert list(vm.run_packets([bytearray(f) for f in frames])) == expect
    assert list(vm.run_packets(np.zeros((2, 9), np.uint8))) == [9, 9]
    assert list(vm.run_packets([])) == []
    assert list(vm.run_batch(np.zeros((2, 5), np.uint8))) == [5, 5]
    assert vm.bench(b"xyz", 5) == 3
    for bad in (5, "abc", [1, 2], np.zeros(4, np.float32), (np.zeros(4, np.uint8), [0], [5])):
        with pytest.raises(ConfigError):
            vm.run_packets(bad)


def test_run_packets_needs_a_packet_program(engine):
    with pytest.raises(ConfigError, match="packet programs"):
        VM(Program.from_asm("mov r0, 0\nexit"), engine).run_packets([b""])
    with pytest.raises(ConfigError, match="runs over a packet"):
        vm_of("mov r0, 0\nexit", "xdp", engine).run()


def test_socket_filter_from_pcap_bytes_to_keep(engine, tmp_path):
    from bpfjit import pcap
    frames = [eth_ipv4_tcp(dport=80), eth_ipv4_tcp(dport=22), b"\0" * 10]
    path = tmp_path / "x.pcap"
    pcap.write(path, Packets.from_list(frames))
    src = """
    ldabsh 12
    jne r0, 0x800, drop
    ldabsh 36
    jne r0, 80, drop
    mov r0, 0xffff
    exit
drop:
    mov r0, 0
    exit"""
    vm = vm_of(src, "socket_filter", engine, Config())
    out = vm.run_packets(pcap.read(path))
    assert list(out) == [0xFFFF, 0, 0]
    assert list(np.minimum(out, pcap.read(path).lengths)) == [len(frames[0]), 0, 0]      # bytes kept


def test_test_run_of_packet_programs(engine):
    src = "mov r6, r1\nmov r2, -4\ncall xdp_adjust_head\nldxw r2, [r6+0]\nldxw r3, [r6+4]\nmov r0, r3\nsub r0, r2\nexit"
    vm = vm_of(src, "xdp", engine)
    res = vm.test_run(data_in=bytes(range(20)), repeat=3)
    assert res.retval == 24 and res.data_out == bytes(4) + bytes(range(20)) and res.ctx_out is None
    assert res.repeat == 3 and res.duration >= 0
    with pytest.raises(ConfigError, match="ctx_in"):
        vm.test_run(data_in=b"", ctx_in=bytes(24))
    assert vm_of("mov r0, 7\nexit", "socket_filter", engine).test_run().retval == 7


# ---------------------------------------------------------------- tcpdump filters over a pcap of mixed traffic
def test_tcpdump_filters_over_a_capture(engine):
    """Every fixture tcpdump filter over mixed.pcap in one run_packets call each, against an independent
    Python decoding of the packets."""
    from bpfjit import cbpf, pcap

    from . import pktdecode
    mixed = pcap.read(pktdecode.DATA / "mixed.pcap")
    frames = list(mixed)
    for name in sorted(pktdecode.filters()):
        vm = VM(cbpf.from_tcpdump(pktdecode.ddd(name)), engine)
        got = vm.run_packets(mixed)
        assert [bool(v) for v in got] == [pktdecode.matches(name, f) for f in frames], name
