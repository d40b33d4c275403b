"""Independent Python decoding of Ethernet frames and the fixture filters (tests/data/packets/filters.tsv)
as Python predicates with libpcap's meaning: a header field the frame is too short for makes the filter
reject the frame (libpcap's filter returns 0 on a load past the end), so fields are read lazily in the
order the filter reads them.
"""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "packets"


class Short(Exception):
    pass


class Frame:
    def __init__(self, b: bytes):
        self.b = b

    def n(self, off, size):
        if off + size > len(self.b):
            raise Short
        return int.from_bytes(self.b[off:off + size], "big")

    def u8(self, off):
        return self.n(off, 1)

    def u16(self, off):
        return self.n(off, 2)

    def u32(self, off):
        return self.n(off, 4)

    # ---- derived fields ----
    def etype(self):
        return self.u16(12)

    def is_ip(self):
        return self.etype() == 0x800

    def is_ip6(self):
        return self.etype() == 0x86DD

    def l4(self):
        return 14 + (self.u8(14) & 0xF) * 4

    def frag(self):
        return self.u16(20) & 0x1FFF

    def ip4_unfragmented(self, proto):
        return self.is_ip() and self.u8(23) == proto and self.frag() == 0


X = 0x0A000001                                    # 10.0.0.1


def _either_port(f, base, pred):
    return pred(f.u16(base)) or pred(f.u16(base + 2))


def _proto_port(f, proto, pred):
    if f.is_ip6():
        return f.u8(20) == proto and _either_port(f, 54, pred)
    return f.ip4_unfragmented(proto) and _either_port(f, f.l4(), pred)


def _host(f, match):
    e = f.etype()
    if e == 0x800:
        return match(f.u32(26)) or match(f.u32(30))
    if e in (0x806, 0x8035):
        return match(f.u32(28)) or match(f.u32(38))
    return False


def _vlan_udp(f):
    if f.etype() not in (0x8100, 0x88A8, 0x9100):
        return False
    inner = f.u16(16)
    if inner == 0x800:
        return f.u8(27) == 17
    if inner == 0x86DD:
        nh = f.u8(24)
        return nh == 17 or (nh == 44 and f.u8(58) == 17)
    return False


def _ip6_proto(f, proto):
    if not f.is_ip6():
        return False
    nh = f.u8(20)
    return nh == proto or (nh == 44 and f.u8(54) == proto)


def _udp_or_icmp_not_host(f):
    if f.is_ip():
        return f.u8(23) in (17, 1) and not (f.u32(26) == X or f.u32(30) == X)
    return _ip6_proto(f, 17)


PREDICATES = {
    "ip_tcp_dport80": lambda f: f.ip4_unfragmented(6) and f.u16(f.l4() + 2) == 80,
    "udp_port53": lambda f: _proto_port(f, 17, lambda p: p == 53),
    "icmp": lambda f: f.is_ip() and f.u8(23) == 1,
    "arp": lambda f: f.etype() == 0x806,
    "ip6": lambda f: f.is_ip6(),
    "host_10_0_0_1": lambda f: _host(f, lambda a: a == X),
    "tcp_syn": lambda f: f.ip4_unfragmented(6) and bool(f.u8(f.l4() + 13) & 0x02),
    "net_192_168": lambda f: _host(f, lambda a: a & 0xFFFF0000 == 0xC0A80000),
    "ip6_tcp": lambda f: _ip6_proto(f, 6),
    "not_ip": lambda f: not f.is_ip(),
    "greater_1000": lambda f: len(f.b) >= 1000,
    "less_100": lambda f: len(f.b) <= 100,
    "ether_broadcast": lambda f: f.u32(2) == 0xFFFFFFFF and f.u16(0) == 0xFFFF,
    "ttl_below_64": lambda f: f.is_ip() and f.u8(22) < 64,
    "ip_fragment": lambda f: f.is_ip() and f.frag() != 0,
    "tcp_portrange": lambda f: _proto_port(f, 6, lambda p: 8000 <= p <= 8100),
    "vlan_udp": _vlan_udp,
    "icmp_echo": lambda f: f.ip4_unfragmented(1) and f.u8(f.l4()) == 8,
    "ether_src": lambda f: f.n(6, 6) == 0x020000000001,
    "udp_or_icmp_not_host": _udp_or_icmp_not_host,
}


def matches(name: str, frame: bytes) -> bool:
    try:
        return bool(PREDICATES[name](Frame(frame)))
    except Short:
        return False


def filters() -> dict[str, str]:
    """name -> tcpdump expression of the committed fixtures."""
    out = {}
    for line in (DATA / "filters.tsv").read_text().splitlines():
        name, expr = line.split("\t")
        out[name] = expr
    return out


def ddd(name: str) -> str:
    return (DATA / "filters" / f"{name}.ddd").read_text()
