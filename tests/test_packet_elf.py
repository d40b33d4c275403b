"""clang-built packet programs (tests/elf/packet_progs.c) in both engines: an XDP load-balancer step (packet
pointers with bounds checks, a per-protocol counter, MAC swap + XDP_TX, redirect through a devmap) and a tc
DNAT (csum_diff, skb_store_bytes, l3/l4_csum_replace, a context write), checked against Python."""
from __future__ import annotations

import struct
from pathlib import Path

from bpfjit import VM
from bpfjit.elf import ObjectFile
from bpfjit.progtypes import TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX

from .test_packet_helpers import inet_csum, ipv4_tcp, tcp_ok

FIX = Path(__file__).parent / "elf" / "packet_progs.o"
MAC_D, MAC_S = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def udp_frame(dport: int) -> bytes:
    udp = struct.pack("!HHHH", 4000, dport, 8 + 4, 0) + b"abcd"
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, b"\x0a\0\0\1",
                               b"\x0a\0\0\2"))
    struct.pack_into("!H", ip, 10, inet_csum(bytes(ip)))
    return MAC_D + MAC_S + b"\x08\x00" + bytes(ip) + udp


def test_xdp_load_balancer_step(engine):
    loaded = ObjectFile.open(FIX).load(programs=["xdp_lb"])
    assert loaded.programs["xdp_lb"].prog_type == "xdp"
    vm = VM(loaded.programs["xdp_lb"], engine, runtime=loaded.runtime)
    loaded.maps["tx_ports"][1] = 9                              # slot 1 -> ifindex 9
    frames = [b"\0" * 13, MAC_D + MAC_S + b"\x08\x06" + bytes(28), ipv4_tcp(), udp_frame(53), udp_frame(80),
              udp_frame(80)[:40], udp_frame(1234)]
    got = list(vm.run_packets(frames))
    assert got == [XDP_DROP, XDP_PASS, XDP_PASS, XDP_TX, XDP_REDIRECT, XDP_DROP, XDP_PASS]
    out = list(vm.last_packets)
    assert bytes(out[3]) == MAC_S + MAC_D + udp_frame(53)[12:]               # MACs swapped
    assert vm.redirects == {4: ("devmap", "tx_ports", 1, 9)}
    hits = loaded.maps["proto_hits"]
    assert (int(hits[6]), int(hits[17])) == (1, 4)
    loaded.maps["tx_ports"][1] = 0                              # empty slot: the flags' verdict
    assert vm.run(udp_frame(80)) == XDP_PASS


def test_tc_dnat_with_checksum_helpers(engine):
    loaded = ObjectFile.open(FIX).load(programs=["tc_dnat"])
    assert loaded.programs["tc_dnat"].prog_type == "sched_cls"
    vm = VM(loaded.programs["tc_dnat"], engine, runtime=loaded.runtime)
    frames = [ipv4_tcp(), udp_frame(53), b"\0" * 20]
    assert list(vm.run_packets(frames)) == [TC_ACT_OK] * 3
    out = [bytes(p) for p in vm.last_packets]
    new = b"\xc0\xa8\x01\x63"
    assert out[0] == ipv4_tcp(dst=new) and tcp_ok(out[0])
    assert out[1:] == frames[1:]                                  # not TCP / not IPv4: untouched
