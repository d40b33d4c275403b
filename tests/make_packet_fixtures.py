"""Rebuilds the packet fixtures under tests/data/packets/ (committed; run this script to regenerate):

  mixed.pcap      ~400 Ethernet frames of mixed traffic (IPv4/IPv6, TCP/UDP/ICMP, ARP, VLAN, 802.3 LLC,
                  fragments, IP options, broadcast/multicast, truncated captures), written with struct here
                  (independently of bpfjit.pcap), seed fixed;
  filters.tsv     name <TAB> tcpdump expression (FILTERS below);
  filters/NAME.ddd  `tcpdump -ddd -y EN10MB 'expr'` output of each filter (needs tcpdump; the expressions
                  are checked against an independent Python decoding in tests/pktdecode.py).

    python tests/make_packet_fixtures.py [--no-tcpdump]
"""
from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "packets"

FILTERS = {
    "ip_tcp_dport80": "ip and tcp and dst port 80",
    "udp_port53": "udp port 53",
    "icmp": "icmp",
    "arp": "arp",
    "ip6": "ip6",
    "host_10_0_0_1": "host 10.0.0.1",
    "tcp_syn": "tcp[tcpflags] & tcp-syn != 0",
    "net_192_168": "net 192.168.0.0/16",
    "ip6_tcp": "ip6 and tcp",
    "not_ip": "not ip",
    "greater_1000": "greater 1000",
    "less_100": "less 100",
    "ether_broadcast": "ether broadcast",
    "ttl_below_64": "ip[8] < 64",
    "ip_fragment": "ip[6:2] & 0x1fff != 0",
    "tcp_portrange": "tcp portrange 8000-8100",
    "vlan_udp": "vlan and udp",
    "icmp_echo": "icmp[icmptype] == icmp-echo",
    "ether_src": "ether src 02:00:00:00:00:01",
    "udp_or_icmp_not_host": "(udp or icmp) and not host 10.0.0.1",
}

MACS = [bytes.fromhex(m) for m in ("020000000001", "020000000002", "020000000003", "ffffffffffff",
                                   "01005e000001", "333300000001")]
IP4 = ["10.0.0.1", "10.0.0.2", "10.0.0.53", "192.168.1.10", "192.168.200.7", "172.16.0.9", "8.8.8.8"]
IP6 = ["2001:db8::1", "2001:db8::2", "fe80::1", "ff02::1"]
PORTS = [80, 443, 22, 53, 123, 8000, 8050, 8100, 8101, 1024, 40000]


def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def ip6(s: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(s).packed


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(dst, src, etype, payload, vlan=None):
    head = dst + src
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", etype) + payload


def ipv4(src, dst, proto, payload, ttl=64, frag=0, mf=False, opts=b""):
    opts += b"\x01" * (-len(opts) % 4)          # NOP padding
    ihl = 5 + len(opts) // 4
    flags = (0x2000 if mf else 0) | frag
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(opts) + len(payload), 0x1234, flags, ttl, proto, 0,
                    ip4(src), ip4(dst)) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src, dst, nh, payload, hlim=64):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, hlim, ip6(src), ip6(dst)) + payload


def tcp(sport, dport, flags, payload=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0) + payload


def udp(sport, dport, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(typ, payload=b""):
    return struct.pack("!BBHHH", typ, 0, 0, 1, 1) + payload


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, op, sha, ip4(spa), tha, ip4(tpa))


def build(rng: random.Random) -> list[tuple[bytes, int]]:
    """(captured frame, wire length) pairs."""
    frames = []

    def pad(n):
        return bytes(rng.randrange(256) for _ in range(n))

    def payload():
        return pad(rng.choice([0, 0, 10, 100, 400, 1000, 1400]))

    for _ in range(400):
        dst, src = rng.choice(MACS), rng.choice(MACS[:3])
        kind = rng.choice(["tcp4", "tcp4", "udp4", "udp4", "icmp4", "tcp6", "udp6", "icmp6", "arp", "vlan",
                           "llc", "frag4"])
        vlan = None
        if kind in ("tcp4", "udp4", "icmp4", "frag4", "vlan"):
            s, d = rng.choice(IP4), rng.choice(IP4)
            ttl = rng.choice([1, 32, 63, 64, 128, 255])
            opts = rng.choice([b"", b"", b"\x07\x07\x04" + pad(4), pad(0) + b"\x94\x04\x00\x00"])
            proto_kind = rng.choice(["tcp", "udp", "icmp"]) if kind in ("frag4", "vlan") else kind[:-1]
            if proto_kind == "tcp":
                flags = rng.choice([0x02, 0x12, 0x10, 0x11, 0x04, 0x18])
                l4, proto = tcp(rng.choice(PORTS), rng.choice(PORTS), flags, payload()), 6
            elif proto_kind == "udp":
                l4, proto = udp(rng.choice(PORTS), rng.choice(PORTS), payload()), 17
            else:
                l4, proto = icmp(rng.choice([8, 0, 3, 11]), payload()), 1
            frag = rng.choice([1, 185]) if kind == "frag4" else 0
            ip = ipv4(s, d, proto, l4, ttl, frag, mf=kind == "frag4" and rng.random() < 0.5, opts=opts)
            if kind == "vlan":
                vlan = rng.randrange(1, 4095)
            f = eth(dst, src, 0x800, ip, vlan)
        elif kind in ("tcp6", "udp6", "icmp6"):
            s, d = rng.choice(IP6), rng.choice(IP6)
            if kind == "tcp6":
                l4, nh = tcp(rng.choice(PORTS), rng.choice(PORTS), rng.choice([0x02, 0x10, 0x12]), payload()), 6
            elif kind == "udp6":
                l4, nh = udp(rng.choice(PORTS), rng.choice(PORTS), payload()), 17
            else:
                l4, nh = icmp(rng.choice([128, 129, 135]), payload()), 58
            f = eth(dst, src, 0x86DD, ipv6(s, d, nh, l4))
        elif kind == "arp":
            f = eth(MACS[3], src, 0x806, arp(rng.choice([1, 2]), src, rng.choice(IP4), bytes(6), rng.choice(IP4)))
        else:                                               # 802.3 length field + LLC
            body = b"\xaa\xaa\x03" + pad(rng.randrange(3, 100))
            f = dst + src + struct.pack("!H", len(body)) + body
        f += bytes(max(0, 60 - len(f)))                      # Ethernet minimum (no FCS)
        wire = len(f)
        if rng.random() < 0.05:                             # snaplen cut
            f = f[:rng.choice([6, 10, 13, 20, 30, 36, 40, 50])]
        frames.append((f, wire))
    return frames


def write_pcap(path: Path, frames) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (f, wire) in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 10, (i % 10) * 100_000 + i, len(f), wire) + f)
    path.write_bytes(b"".join(out))


def main(argv) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    write_pcap(OUT / "mixed.pcap", build(random.Random(12)))
    (OUT / "filters.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in FILTERS.items()))
    if "--no-tcpdump" not in argv:
        (OUT / "filters").mkdir(exist_ok=True)
        for name, expr in FILTERS.items():
            text = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", expr], check=True, capture_output=True,
                                  text=True).stdout
            (OUT / "filters" / f"{name}.ddd").write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
