"""bpfjit.dask.filter on a real dask.distributed LocalCluster of 2 worker processes (one per module): dask arrays
and DataFrames, map merge rules (sum, max, union, a function), write-back into the client's maps, pickling of
what travels, bad input. Both engines."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpfjit import ArrayMap, Config, ConfigError, Filter, HashMap, ProgArrayMap, Program

ROOT = Path(__file__).resolve().parents[1]


def need(module: str):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install 'bpfjit[dask]'); CI requires it")


@pytest.fixture(scope="module")
def client():
    need("dask")
    need("pandas")
    from dask.distributed import Client, LocalCluster
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


# r0 = value > 100; hist[value & 7] += 1 (atomic); top[value & 7] = max(top[...], value)
PROG = """
ldxdw r6, [r1+0]
mov r7, r6
and r7, 7
lsh r7, 3
lddw r1, map_value(hist, 0)
add r1, r7
mov r3, 1
lock add [r1+0], r3
lddw r1, map_value(top, 0)
add r1, r7
ldxdw r3, [r1+0]
jge r3, r6, skip
stxdw [r1+0], r6
skip:
mov r0, 0
jle r6, 100, out
mov r0, 1
out:
exit
"""
INSERT = """
ldxdw r6, [r1+0]
and r6, 31
stxdw [r10-8], r6
stxdw [r10-16], r6
lddw r1, map(seen)
mov r2, r10
add r2, -8
mov r3, r10
add r3, -16
mov r4, 0
call map_update_elem
mov r0, 1
exit
"""


def records(n: int, seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).integers(0, 1000, n, dtype=np.uint64)
    return v.view(np.uint8).reshape(n, 8)


def u64(a: np.ndarray) -> np.ndarray:
    return a.copy().view(np.uint64).reshape(-1)


def maps():
    return {"hist": ArrayMap(4, 8, 8, name="hist", value_type=np.uint64),
            "top": ArrayMap(4, 8, 8, name="top", value_type=np.uint64)}


def test_dask_array_apply_with_sum_and_max(client, engine):
    import dask.array as da
    import bpfjit.dask as bd
    n = 4000 if engine == "interp" else 100_000
    recs = records(n)
    v = u64(recs)
    m = maps()
    m["hist"].values[:] = 1000                  # sum adds the partitions' counts to what the client has
    res = bd.filter(da.from_array(recs, chunks=(n // 4, 8)), PROG, {"hist": "sum", "top": "max"}, maps=m,
                    engine=engine)
    assert np.array_equal(res.data, recs[v > 100])
    expect_hist = [1000 + int(((v & 7) == i).sum()) for i in range(8)]
    expect_top = [int(v[(v & 7) == i].max()) for i in range(8)]
    assert [int(x) for x in res.maps["hist"]] == expect_hist and [int(x) for x in m["hist"].values] == expect_hist
    assert [int(x) for x in res.maps["top"]] == expect_top and [int(x) for x in m["top"].values] == expect_top
    local = Filter(PROG, engine=engine, maps=maps())
    assert np.array_equal(local.apply(recs), res.data)


def test_dask_dataframe_partitions_and_modes(client, engine):
    import dask.dataframe as dd
    import pandas as pd
    import bpfjit.dask as bd
    n = 3000
    v = u64(records(n))
    df = pd.DataFrame({"value": v})
    ddf = dd.from_pandas(df, npartitions=3)
    res = bd.filter(ddf, PROG, maps=maps(), engine=engine)
    assert isinstance(res.data, pd.DataFrame) and list(res.data["value"]) == [int(x) for x in v[v > 100]]
    assert int(res.maps["hist"].sum()) == n
    mask = bd.filter(ddf, PROG, maps=maps(), engine=engine, mode="mask").data
    assert np.array_equal(mask, v > 100)
    r0 = bd.filter(ddf, PROG, maps=maps(), engine=engine, mode="r0").data
    assert r0.dtype == np.uint64 and np.array_equal(r0, (v > 100).astype(np.uint64))


def test_union_of_hash_maps_and_a_user_rule(client, engine):
    import dask.array as da
    import bpfjit.dask as bd
    recs = records(2000)
    v = u64(recs)
    seen = HashMap(8, 8, 64, name="seen", key_type=np.uint64, value_type=np.uint64)
    seen[1000] = 5                               # kept: union starts every partition from the client contents
    res = bd.filter(da.from_array(recs, chunks=(500, 8)), INSERT, "union", maps={"seen": seen}, engine=engine)
    keys = {int(k) for k in res.maps["seen"]}
    assert keys == {int(x) for x in set(v & 31)} | {1000}
    assert sorted(int(k) for k in seen.keys()) == sorted(keys) and seen[1000] == 5
    calls = []

    def rule(a, b):                              # runs at the client, so it needs no pickling
        calls.append(1)
        return np.maximum(a, b) + 1
    h = ArrayMap(4, 8, 8, name="hist", value_type=np.uint64)
    res = bd.filter(da.from_array(recs, chunks=(500, 8)), PROG, {"hist": rule}, maps={"hist": h,
                    "top": ArrayMap(4, 8, 8, name="top", value_type=np.uint64)}, engine=engine)
    assert len(calls) == 4 and int(res.maps["hist"].min()) >= 4


def test_what_travels_pickles():
    import bpfjit.dask as bd
    prog = Program.from_asm("mov r0, 1\nexit")
    cfg = Config(opt_level=3, checked=False)
    spec = bd.FilterSpec(prog, "jit", cfg, None, [bd.MapSpec.of("hist", ArrayMap(4, 8, 8, name="hist"))])
    back = pickle.loads(pickle.dumps(spec))
    assert back.source.insns == prog.insns and back.config == cfg and back.key() == spec.key()
    assert back.maps[0].build().max_entries == 8


def test_bad_input(client, engine):
    import dask.array as da
    import bpfjit.dask as bd
    d = da.from_array(records(100), chunks=(50, 8))
    with pytest.raises(ConfigError, match="rule must be one of"):
        bd.filter(d, PROG, {"hist": "avg"}, maps=maps(), engine=engine)
    with pytest.raises(ConfigError, match="does not apply to array maps"):
        bd.filter(d, PROG, {"hist": "union"}, maps=maps(), engine=engine)
    with pytest.raises(ConfigError, match="prog_array map"):
        bd.filter(d, PROG, maps={"p": ProgArrayMap(4)}, engine=engine)
    with pytest.raises(ConfigError, match="dask Array or DataFrame"):
        bd.filter(records(10), PROG, maps=maps(), engine=engine)
    with pytest.raises(ConfigError, match="first axis only"):
        bd.filter(da.from_array(records(100), chunks=(50, 4)), PROG, maps=maps(), engine=engine)


def test_filter_dask_example_runs(client, engine):
    n = "200000" if engine == "jit" else "4000"          # on this module's cluster (--scheduler)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "filter_dask.py"), "--records", n,
                          "--engine", engine, "--scheduler", client.scheduler.address],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "kept" in out.stdout and "histogram" in out.stdout
