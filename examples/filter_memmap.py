"""Filter a large file of fixed-size records, memory-mapped, on all cores, with a progress bar.

    python examples/filter_memmap.py [--records N] [--engine jit|interp] [--dir DIR]

Writes N 64-byte event records (u64 timestamp, u32 pid, u32 latency_us, 48 bytes payload) to DIR, maps the
file with Filter.open_records (pages are read as chunks reach them, so the file may be larger than
memory), keeps the events slower than 500 µs with a BPF filter, and prints what it kept and how fast.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bpfjit import Filter

EVENT = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("latency_us", "<u4"), ("payload", "V48")])

SLOW = """
ldxw r2, [r1+12]          # latency_us
mov r0, 0
jle r2, 500, out
mov r0, 1
out:
exit
"""


def write_events(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    step = 1 << 20
    with open(path, "wb") as fh:
        for start in range(0, n, step):
            m = min(step, n - start)
            ev = np.zeros(m, dtype=EVENT)
            ev["ts"] = np.arange(start, start + m)
            ev["pid"] = rng.integers(1, 5000, m)
            ev["latency_us"] = rng.exponential(120, m).astype(np.uint32)
            ev.tofile(fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--engine", default="jit", choices=("jit", "interp"))
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "events.bin"
        write_events(path, args.records)
        events = Filter.open_records(path, EVENT)                  # an np.memmap: nothing is read yet
        f = Filter(SLOW, engine=args.engine)                # progress bar on a terminal (pip install tqdm)
        t0 = time.perf_counter()
        slow = f.apply(events)                              # all cores: threads=None
        dt = time.perf_counter() - t0
        assert np.all(slow["latency_us"] > 500)
        print(f"kept {len(slow)} of {len(events)} events ({f.engine}, {Filter.default_threads()} cores): "
              f"{len(events) / dt:,.0f} records/s")
        del events, slow


if __name__ == "__main__":
    main()
