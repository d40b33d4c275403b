"""`bpfjit bench`: table, JSON, engine selection, ELF programs, --plot, errors; the bpf_benchmark pytest
fixture (run in a child pytest); examples/bench_program.py runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpfjit.cli import main

ROOT = Path(__file__).resolve().parents[1]
ELF = Path(__file__).resolve().parent / "elf" / "calls.o"
PROG = "ldxb r0, [r1+0]\nadd r0, 1\nexit\n"


def need(module: str):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install 'bpfjit[test]'); CI requires it")


@pytest.fixture
def prog_file(tmp_path):
    p = tmp_path / "p.asm"
    p.write_text(PROG)
    d = tmp_path / "mem.bin"
    d.write_bytes(bytes([41, 0, 0, 0]))
    return p, d


def test_table_for_both_engines(prog_file, capsys):
    p, d = prog_file
    assert main(["bench", str(p), "--data", str(d), "--repeat", "20"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["engine", "mode"] and "vs interp" in lines[0]
    rows = [ln.split() for ln in lines[2:6]]
    assert [(r[0], r[1]) for r in rows] == [("interp", "call"), ("interp", "loop"), ("jit", "call"), ("jit", "loop")]
    assert rows[0][-1] == "1.0x" and rows[2][-1].endswith("x")


def test_json_one_engine_and_opt(prog_file, capsys):
    p, d = prog_file
    assert main(["bench", str(p), "--data", str(d), "--repeat", "5", "--engines", "jit", "--opt", "3",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["engine"], r["mode"]) for r in doc["rows"]] == [("jit", "call"), ("jit", "loop")]
    for r in doc["rows"]:
        assert r["retval"] == 42 and r["min_ns"] <= r["median_ns"] and r["repeat"] == 5 and r["speedup"] is None


def test_elf_program(capsys):
    assert main(["bench", str(ELF), "--program", "prog_b", "--repeat", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["engine"] for r in rows} == {"interp", "jit"}
    assert len({r["retval"] for r in rows}) == 1             # both engines agree
    assert main(["bench", str(ELF), "--repeat", "3"]) == 1
    assert "choose one with --program" in capsys.readouterr().err


def test_plot(prog_file, tmp_path, capsys):
    need("matplotlib")
    p, d = prog_file
    out = tmp_path / "chart.png"
    assert main(["bench", str(p), "--data", str(d), "--repeat", "5", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--engines", "jit,foo"], "unknown engine 'foo'"),
    (["--repeat", "0"], "not positive"),
    (["--opt", "7"], "invalid choice"),
])
def test_bad_options(prog_file, capsys, argv, message):
    p, d = prog_file
    assert main(["bench", str(p), "--data", str(d)] + argv) == 1
    assert message in capsys.readouterr().err


def test_fault_is_reported(tmp_path, capsys):
    p = tmp_path / "bad.asm"
    p.write_text("ldxdw r0, [r1+0]\nexit\n")              # no mem: the load faults
    assert main(["bench", str(p), "--repeat", "2"]) == 2
    assert "fault:" in capsys.readouterr().err


PLUGIN_TEST = '''
import pytest

@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("mode", ["call", "loop"])
def test_speed(bpf_benchmark, engine, mode):
    r0 = bpf_benchmark("ldxb r0, [r1+0]\\nadd r0, 1\\nexit", bytearray([6]), engine=engine, mode=mode, repeat=10)
    assert r0 == 7
'''


def test_bpf_benchmark_fixture_in_a_user_suite(tmp_path):
    (tmp_path / "test_user.py").write_text(PLUGIN_TEST)
    from importlib.metadata import entry_points
    installed = any(ep.value == "bpfjit.pytest_plugin" for ep in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "bpfjit.pytest_plugin"]     # the pytest11 entry point loads it
    out = subprocess.run([sys.executable, "-m", "pytest", *load, "-q", "-p",
                          "no:cacheprovider", "--benchmark-min-rounds=2", "--benchmark-max-time=0.01",
                          "--benchmark-json", str(tmp_path / "b.json"), str(tmp_path / "test_user.py")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 passed" in out.stdout
    doc = json.loads((tmp_path / "b.json").read_text())
    infos = sorted((b["extra_info"]["engine"], b["extra_info"]["mode"]) for b in doc["benchmarks"])
    assert infos == [("interp", "call"), ("interp", "loop"), ("jit", "call"), ("jit", "loop")]
    assert all(b["extra_info"]["ns_per_run"] > 0 for b in doc["benchmarks"] if b["extra_info"]["mode"] == "loop")


def test_bench_program_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "bench_program.py"), "--repeat", "20"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "retval=" in out.stdout and "jit     loop" in out.stdout
