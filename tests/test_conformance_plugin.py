"""The bpf_conformance plugin (`python -m bpfjit.conformance`) and the directory runner's verdicts.

The plugin is driven exactly as the upstream runner drives it: memory hex in argv, program hex on stdin,
both encoded as the runner encodes them ("xx  " per byte). A handful of files go through a real
subprocess; every upstream file goes through `main()` in-process (a subprocess per file would be slow).
"""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from bpfjit import conformance, datafile, isa

from .conftest import shared_dir, shared_params

SHARED = shared_dir()
CONF = SHARED / "conformance" if SHARED else None
CONF_FILES = sorted((CONF / "tests").glob("*.data")) if CONF and CONF.is_dir() else []
SUBPROCESS_FILES = ("add", "mem-len", "lddw", "callx", "subnet")   # no mem, mem, lddw raw, helper, packet

EXIT_PROG = bytes.fromhex("b700000007000000 9500000000000000")     # mov r0, 7; exit
LOAD_DW = bytes.fromhex("7910000000000000 9500000000000000")       # ldxdw r0, [r1]; exit


def base16(data: bytes) -> str:
    """How the upstream runner writes bytes: two hex digits and two spaces per byte."""
    return "".join(f"{b:02x}  " for b in data)


def _case(path):
    """(memory argv list, program stdin text, expected r0) of a .data file."""
    df = datafile.load(path)
    mem = [base16(df.mem)] if df.mem else []
    return mem, base16(isa.encode(datafile.insns_of(df))) + "\n", df.result


def _plugin(argv, stdin: str, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = conformance.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _subprocess(argv, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bpfjit.conformance", *argv], input=stdin,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------ subprocess
@pytest.mark.needs_shared(1)
@pytest.mark.parametrize("name", SUBPROCESS_FILES)
def test_plugin_subprocess(name, engine):
    mem, program, expected = _case(CONF / "tests" / f"{name}.data")
    done = _subprocess([*mem, "--engine", engine], program)
    assert (done.returncode, done.stderr) == (0, "")
    assert int(done.stdout, 16) == expected


@pytest.mark.parametrize("stdin", ["this is not hex\n", "b7 00 00\n"], ids=["garbage", "truncated"])
def test_plugin_subprocess_rejects_garbage(stdin, engine):
    done = _subprocess(["--engine", engine], stdin)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpfjit-conformance: "), done.stderr


# ------------------------------------------------------------------------------------- in-process
@pytest.mark.parametrize("path", shared_params(CONF_FILES, 313, lambda p: p.stem))
def test_plugin_every_file(path, engine, capsys, monkeypatch):
    mem, program, expected = _case(path)
    status, out, err = _plugin([*mem, "--engine", engine], program, capsys, monkeypatch)
    assert (status, err) == (0, "")
    assert int(out, 16) == expected, f"{path.name}: r0 {out.strip()} != expected {expected:#x}"


@pytest.mark.needs_shared(1)
def test_suite_present():
    assert len(CONF_FILES) == 313


@pytest.mark.parametrize("argv", [
    ["", ""],                              # older runner, no memory and no options
    ["", "--engine {engine}"],             # older runner: all options in one argument
    ["--engine", "{engine}"],              # newer runner: no memory argument at all
    ["--engine={engine}"],
], ids=["empty-args", "options-string", "split-options", "equals"])
def test_plugin_argv_of_both_runner_generations(argv, engine, capsys, monkeypatch):
    argv = [a.format(engine=engine) for a in argv]
    assert _plugin(argv, base16(EXIT_PROG), capsys, monkeypatch) == (0, "7\n", "")


def test_plugin_memory_argument(engine, capsys, monkeypatch):
    mem = base16(bytes(range(1, 9)))
    status, out, err = _plugin([mem, f"--engine {engine}"], base16(LOAD_DW), capsys, monkeypatch)
    assert (status, out, err) == (0, "807060504030201\n", "")


def test_plugin_program_option(engine, capsys, monkeypatch):
    argv = ["--engine", engine, "--program", EXIT_PROG.hex()]
    assert _plugin(argv, "ignored", capsys, monkeypatch) == (0, "7\n", "")


PLUGIN_ERRORS = {   # name -> (argv, stdin, exit status, stderr fragment)
    "fault": ([], base16(LOAD_DW), 2, "fault: instruction 0: load of 8 bytes at NULL + 0"),
    "load error": ([], "04 10 00 00 01 00 00 00 95 00 00 00 00 00 00 00", 1, "instruction 0: add32: reserved"),
    "empty program": ([], "\n", 1, "empty program"),
    "bad memory": (["xyz"], base16(EXIT_PROG), 1, "memory: not a sequence of hex bytes"),
    "unknown engine": (["--engine", "ebpf"], base16(EXIT_PROG), 1, "invalid choice: 'ebpf'"),
    "unknown option": (["--elf"], base16(EXIT_PROG), 1, "unrecognized arguments: --elf"),
}


@pytest.mark.parametrize("name", PLUGIN_ERRORS)
def test_plugin_errors(name, engine, capsys, monkeypatch):
    argv, stdin, want_status, fragment = PLUGIN_ERRORS[name]
    if "--engine" not in argv:
        argv = [*argv, "--engine", engine]
    status, out, err = _plugin(argv, stdin, capsys, monkeypatch)
    assert (status, out) == (want_status, "")
    assert len(err.splitlines()) == 1 and err.startswith("bpfjit-conformance: ") and fragment in err, err


def test_plugin_argv_normalisation():
    assert conformance.plugin_argv(["aa  bb  ", "--engine interp"]) == ["aa  bb  ", "--engine", "interp"]
    assert conformance.plugin_argv(["", ""]) == []


# ------------------------------------------------------------------------------- directory runner
VERDICTS = {   # negative/ file -> the runner's verdict on it
    "unused-add_imm-src.data": "pass",                      # load must fail, and does
    "invalid_label.data": "fail",                           # expects a result but cannot be assembled
    "incorrect_return_value_high_bits.data": "fail",        # the expected value is deliberately wrong
    "error.data": "fail",                                   # expects an error from a valid program
    "empty.data": "skip",                                   # no instructions
}


@pytest.mark.needs_shared(1)
@pytest.mark.parametrize("name", VERDICTS)
def test_check_file_verdicts(name, engine):
    outcome = conformance.check_file(CONF / "negative" / name, engine)
    assert outcome.status == VERDICTS[name], outcome.message


def test_check_file_unreadable(tmp_path):
    bad = tmp_path / "bad.data"
    bad.write_text("-- asm\nexit\n-- mem\nzz\n")
    outcome = conformance.check_file(bad)
    assert outcome.status == "fail" and "cannot read the file" in outcome.message


def test_run_directory_is_sorted_and_not_recursive(tmp_path, engine):
    (tmp_path / "sub").mkdir()
    for name in ("b.data", "a.data", "sub/c.data"):
        (tmp_path / name).write_text("-- asm\nmov %r0, 1\nexit\n-- result\n0x1\n")
    outcomes = conformance.run_directory(tmp_path, engine)
    assert [(o.path.name, o.status) for o in outcomes] == [("a.data", "pass"), ("b.data", "pass")]
