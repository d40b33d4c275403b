"""Classic BPF (tcpdump filters, SO_ATTACH_FILTER programs) for bpfjit.

    prog = bpfjit.cbpf.load([(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x6, 0, 0, 65535), (0x6, 0, 0, 0)])
    prog = bpfjit.cbpf.from_tcpdump(open("filter.txt").read())      # `tcpdump -ddd` output
    prog = bpfjit.cbpf.compile("ip and tcp and dst port 80")          # through libpcap (optional)
    VM(prog, "jit").run(frame)                                        # -> bytes to keep (0 = drop)

Each returns a `Program` of eBPF converted with the kernel's semantics (convert.py), validated as the
kernel's `bpf_check_classic` does (check.py); `prog.cbpf` keeps the original instructions. The program is
a socket filter: `VM.run(frame)` / `VM.run_packets(packets)` run it over frames as an AF_PACKET raw socket
sees them (data starts at the link-layer header), so offsets mean what they mean to tcpdump on an Ethernet
capture; r0 is the number of bytes to keep. `interp.run(prog.cbpf, frame)` is the reference cBPF interpreter.
Modules: opcodes (table, constants), check, convert, interp, libpcap (ctypes).
"""
from __future__ import annotations

from ..errors import BPFError, LoadError
from ..program import DEFAULT_CONFIG, Config, Program
from . import interp
from .check import check
from .convert import ANC_DEFAULTS, convert
from .opcodes import OPS, SKF_AD, SKF_AD_OFF, SKF_LL_OFF, SKF_NET_OFF, SockFilter, disassemble

PROG_TYPE = "socket_filter"      # r1 = struct __sk_buff, the frame is the packet (LD_ABS/LD_IND read it)


def load(insns, *, name: str = "cbpf", nhoff: int = 14, anc: dict | None = None,
         config: Config = DEFAULT_CONFIG) -> Program:
    """A Program from classic BPF instructions ((code, jt, jf, k) tuples, `struct sock_filter`).

    nhoff: offset of the network header in the frame (SKF_NET_OFF loads); anc: constant values of
    ancillary loads without a packet source (see convert.ANC_DEFAULTS). Raises LoadError(pc, field)."""
    filt = check(insns)
    unknown = set(anc or ()) - set(ANC_DEFAULTS)
    if unknown:
        raise LoadError(f"unknown ancillary constant(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(ANC_DEFAULTS)}")
    for key, value in (anc or {}).items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
            raise LoadError(f"ancillary constant {key} must be a u32 integer, not {value!r}")
    if not isinstance(nhoff, int) or isinstance(nhoff, bool) or not 0 <= nhoff <= 0xFFFF:
        raise LoadError(f"nhoff must be an integer 0..65535, not {nhoff!r}")
    prog = Program.from_insns(convert(filt, nhoff=nhoff, anc=anc), config, name=name, prog_type=PROG_TYPE)
    prog.cbpf = filt
    return prog


def parse_tcpdump(text: str) -> list[SockFilter]:
    """Instructions of `tcpdump -ddd` output: a count line, then one "code jt jf k" line each (decimal)."""
    if not isinstance(text, str):
        raise LoadError(f"tcpdump -ddd text must be a string, not {type(text).__name__}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise LoadError("empty tcpdump -ddd text")
    try:
        count = int(lines[0])
    except ValueError:
        raise LoadError(f"line 1: expected the instruction count, got {lines[0]!r}") from None
    body = lines[1:]
    if count != len(body):
        raise LoadError(f"line 1: count {count} but {len(body)} instruction lines follow")
    out = []
    for i, ln in enumerate(body):
        parts = ln.split()
        try:
            if len(parts) != 4:
                raise ValueError
            out.append(SockFilter(*(int(p, 0) for p in parts)))
        except ValueError:
            raise LoadError(f"line {i + 2}: expected 'code jt jf k' (4 integers), got {ln!r}", i) from None
    return out


def from_tcpdump(text: str, **kw) -> Program:
    """A Program from `tcpdump -ddd` output (see `load` for the keyword arguments)."""
    return load(parse_tcpdump(text), **kw)


def compile(expr: str, *, linktype: int = 1, snaplen: int = 65535, optimize: bool = True, **kw) -> Program:
    """Compile a tcpdump filter expression through libpcap (ctypes); BPFError without libpcap."""
    from .libpcap import compile_insns
    return load(compile_insns(expr, linktype, snaplen, optimize), name=kw.pop("name", "pcap_filter"), **kw)


__all__ = ["load", "from_tcpdump", "parse_tcpdump", "compile", "check", "convert", "interp", "disassemble",
           "SockFilter", "OPS", "SKF_AD", "SKF_AD_OFF", "SKF_NET_OFF", "SKF_LL_OFF", "BPFError"]
