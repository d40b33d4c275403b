"""Filter records on a Dask cluster and merge the maps the program wrote (here: a LocalCluster of 2 worker
processes; point Client at a scheduler address to use a multi-machine cluster, see docs/filtering.md).

    python examples/filter_dask.py [--records N] [--engine jit|interp] [--scheduler tcp://host:8786]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bpfjit import ArrayMap
from bpfjit import dask as bpf_dask        # bpfjit.dask: needs pip install 'bpfjit[dask]'

EVENT = np.dtype([("ts", "<u8"), ("latency_us", "<u4"), ("cpu", "<u4")])

# keep events slower than 500 us; count every event per log2(latency) bucket
PROG = """
ldxw r6, [r1+8]            # latency_us
mov r7, 0
mov r2, r6
loop:
jeq r2, 0, done
rsh r2, 1
add r7, 1
jlt r7, 31, loop
done:
lsh r7, 3
lddw r1, map_value(hist, 0)
add r1, r7
mov r3, 1
lock add [r1+0], r3
mov r0, 0
jle r6, 500, out
mov r0, 1
out:
exit
"""


def main() -> None:
    import dask.array as da
    from dask.distributed import Client, LocalCluster
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--engine", default="jit", choices=("jit", "interp"))
    ap.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    events = np.zeros(args.records, dtype=EVENT)
    events["ts"] = np.arange(args.records)
    events["latency_us"] = rng.exponential(120, args.records).astype(np.uint32)
    darr = da.from_array(events, chunks=max(1, args.records // 8))

    cluster = None if args.scheduler else LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                       dashboard_address=None)
    with Client(args.scheduler or cluster) as client:
        hist = ArrayMap(4, 8, 32, name="hist", value_type=np.uint64)
        t0 = time.perf_counter()
        res = bpf_dask.filter(darr, PROG, {"hist": "sum"}, maps={"hist": hist}, engine=args.engine)
        dt = time.perf_counter() - t0
        workers = len(client.scheduler_info()["workers"])
    if cluster is not None:
        cluster.close()
    assert np.all(res.data["latency_us"] > 500) and int(hist.values.sum()) == args.records
    print(f"kept {len(res.data)} of {args.records} events in {dt:.2f} s ({args.engine}, {workers} workers)")
    print("latency histogram (log2 us buckets):",
          {i: int(c) for i, c in enumerate(hist.values) if c})


if __name__ == "__main__":
    main()
