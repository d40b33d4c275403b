"""Filter a pcap/pcapng file with a tcpdump expression, JIT-compiled: counts and writes the matching packets.

    python examples/pcap_filter.py [FILE] [EXPR] [-o OUT.pcap]

FILE defaults to the test fixture tests/data/packets/mixed.pcap, EXPR to "ip and tcp and dst port 80".
The expression is compiled through libpcap (ctypes); without libpcap, EXPR may be a `tcpdump -ddd` file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bpfjit import VM, BPFError, cbpf, pcap

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "packets" / "mixed.pcap"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(FIXTURE))
    ap.add_argument("expr", nargs="?", default="ip and tcp and dst port 80")
    ap.add_argument("-o", "--out")
    args = ap.parse_args(argv)
    try:
        packets = pcap.read(args.file)
        if Path(args.expr).is_file():
            prog = cbpf.from_tcpdump(Path(args.expr).read_text())
        else:
            prog = cbpf.compile(args.expr)
        vm = VM(prog, "jit")
        keep = np.array([vm.run(frame) != 0 for frame in packets], dtype=bool)
    except BPFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{int(keep.sum())} of {len(packets)} packets match {args.expr!r}")
    if args.out:
        pcap.write(args.out, packets[np.flatnonzero(keep)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
