"""The `bpfjit` command line, in-process through `bpfjit.cli.main` (plus one run of the installed script).

Every error path must give exactly one `bpfjit: ...` line on stderr and the documented exit status.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import bpfjit
from bpfjit import Program, cli

from .conftest import shared_dir

SHARED = shared_dir()
CONF_TESTS = SHARED / "conformance" / "tests" if SHARED else None

ADD = "mov %r0, 1\nadd %r0, %r2\nexit\n"          # r0 = 1 + mem length
ADD_WORDS = ("0x00000001000000b7", "0x000000000000200f", "0x0000000000000095")
LOAD_DW = "ldxdw %r0, [%r1]\nexit\n"                # faults without mem
NULL_LOAD = ("load of 8 bytes at NULL + 0 (a pointer that may be NULL, such as a map lookup's result, must be "
             "checked before use); host address 0x0 size 8")     # its fault message (faultinfo.py)
LOOP = "mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 50, loop\nexit\n"   # 1 + 2*50 + 1 instructions


def _code(text: str) -> bytes:
    return Program.from_asm(text).to_bytes()


@pytest.fixture
def write(tmp_path):
    """write(name, content) -> path string of a file in tmp_path."""
    def _write(name, content):
        p = tmp_path / name
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        return str(p)
    return _write


def _error_line(capsys) -> str:
    """The single stderr line of a failed command (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bpfjit: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------ asm
def test_asm_binary_to_stdout(write, capsysbinary):
    assert cli.main(["asm", write("p.s", ADD)]) == 0
    out, err = capsysbinary.readouterr()
    assert out == _code(ADD) and err == b""


def test_asm_output_file(write, tmp_path, capsys):
    out = tmp_path / "p.bin"
    assert cli.main(["asm", write("p.s", ADD), "-o", str(out)]) == 0
    assert out.read_bytes() == _code(ADD)
    assert capsys.readouterr() == ("", "")


def test_asm_hex_words(write, capsys):
    assert cli.main(["asm", write("p.s", ADD), "--hex"]) == 0
    assert capsys.readouterr().out.split() == list(ADD_WORDS)


def test_asm_hex_to_file(write, tmp_path):
    out = tmp_path / "p.hex"
    assert cli.main(["asm", write("p.s", ADD), "--hex", "-o", str(out)]) == 0
    assert out.read_text().split() == list(ADD_WORDS)


def test_asm_refuses_binary_to_terminal(write, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(isatty=lambda: True, write=sys.stdout.write))
    assert cli.main(["asm", write("p.s", ADD)]) == 1
    assert "terminal" in _error_line(capsys)


def test_asm_error_names_file_and_line(write, capsys):
    path = write("bad.s", "mov %r0, 1\n\nfrob %r0\nexit\n")
    assert cli.main(["asm", path]) == 1
    assert _error_line(capsys) == f"bpfjit: {path}: line 3: Unknown mnemonic 'frob' ('frob %r0')"


def test_asm_load_error_names_instruction(write, capsys):
    path = write("jump.s", "mov %r0, 1\nja +5\nexit\n")
    assert cli.main(["asm", path]) == 1
    assert _error_line(capsys).startswith(f"bpfjit: {path}: instruction 1: ja target 7 is outside")


# --------------------------------------------------------------------------------------- disasm
INPUTS = {   # FILE format -> its content for the ADD program
    "asm": ADD,
    "binary": _code(ADD),
    "hex-words": "\n".join(ADD_WORDS) + "\n",
    "hex-bytes": " ".join(f"{b:02x}" for b in _code(ADD)) + "  # comment\n",
    "hex-xxd": _code(ADD).hex() + "\n",
    "data": "# header\n-- asm\n" + ADD + "-- result\n0x1\n",
}


@pytest.mark.parametrize("fmt", INPUTS)
def test_disasm_detects_format(fmt, write, capsys):
    assert cli.main(["disasm", write(f"prog.{fmt}", INPUTS[fmt])]) == 0
    assert capsys.readouterr() == (ADD, "")


def test_read_program_kinds(write):
    kinds = {fmt: cli.read_program(write(f"k.{fmt}", content)).kind for fmt, content in INPUTS.items()}
    assert kinds == {"asm": "asm", "binary": "binary", "hex-words": "hex", "hex-bytes": "hex", "hex-xxd": "hex",
                     "data": "data"}


def test_disasm_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(_code(ADD))))
    assert cli.main(["disasm", "-"]) == 0
    assert capsys.readouterr().out == ADD


def test_disasm_shows_invalid_slots(write, capsys):
    code = bytes.fromhex("0410000001000000") + _code("exit")   # add32 with a non-zero src field
    assert cli.main(["disasm", write("unused.bin", code)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# invalid: opcode 0x04") and out[1] == "exit"


def test_disasm_ir(write, capsys):
    path = write("p.s", ADD)
    assert cli.main(["disasm", path, "--ir", "--safety", "checked"]) == 0
    checked = capsys.readouterr().out
    assert "define" in checked and "@bpf_entry" in checked
    assert cli.main(["disasm", path, "--ir", "--unchecked"]) == 0
    unchecked = capsys.readouterr().out
    assert "@bpf_entry" in unchecked
    assert len(unchecked.splitlines()) < len(checked.splitlines())   # no meter, no bounds checks


def test_disasm_native(write, capsys):
    assert cli.main(["disasm", write("p.s", ADD), "--native", "--opt", "1"]) == 0
    out = capsys.readouterr().out
    assert "bpf_entry" in out and out.endswith("\n")


def test_disasm_ir_and_native_exclusive(write, capsys):
    assert cli.main(["disasm", write("p.s", ADD), "--ir", "--native"]) == 1
    assert "not allowed with argument" in _error_line(capsys)


def test_disasm_ir_load_error(write, capsys):
    path = write("noexit.s", "mov %r0, 1\n")
    assert cli.main(["disasm", path, "--ir"]) == 1
    assert _error_line(capsys) == f"bpfjit: {path}: instruction 0: the last instruction must be exit or ja"


# ------------------------------------------------------------------------------------------ run
@pytest.mark.parametrize("fmt", INPUTS)
def test_run_every_format(fmt, engine, write, capsys):
    assert cli.main(["run", write(f"prog.{fmt}", INPUTS[fmt]), "--engine", engine]) == 0
    assert capsys.readouterr() == ("0x1 (1)\n", "")


def test_run_mem_hex(engine, write, capsys):
    assert cli.main(["run", write("p.s", ADD), "--engine", engine, "--mem", "01 02 0304"]) == 0
    assert capsys.readouterr().out == "0x5 (5)\n"


def test_run_mem_file(engine, write, capsys):
    mem = write("mem.bin", bytes(range(16)))
    assert cli.main(["run", write("p.s", LOAD_DW), "--engine", engine, "--mem-file", mem]) == 0
    assert capsys.readouterr().out == "0x706050403020100 (506097522914230528)\n"


def test_run_data_file_mem(engine, write, capsys):
    path = write("t.data", "-- asm\n" + LOAD_DW + "-- mem\n11 22 33 44 55 66 77 88\n-- result\n0x1\n")
    assert cli.main(["run", path, "--engine", engine]) == 0
    assert capsys.readouterr().out == "0x8877665544332211 (9833440827789222417, signed -8613303245920329199)\n"
    assert cli.main(["run", path, "--engine", engine, "--mem", "0100000000000000"]) == 0   # --mem wins
    assert capsys.readouterr().out == "0x1 (1)\n"


def test_run_signed_result(engine, write, capsys):
    assert cli.main(["run", write("p.s", "mov %r0, -2\nexit\n"), "--engine", engine]) == 0
    assert capsys.readouterr().out == "0xfffffffffffffffe (18446744073709551614, signed -2)\n"


def test_run_stdin_assembly(engine, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b"mov r0, 7\nexit\n")))
    assert cli.main(["run", "-", "--engine", engine]) == 0
    assert capsys.readouterr().out == "0x7 (7)\n"


@pytest.mark.parametrize("opts", [["--opt", "0"], ["--opt", "3"], ["--unchecked"]], ids=" ".join)
def test_run_jit_options_keep_the_result(opts, engine, write, capsys):
    assert cli.main(["run", write("loop.s", LOOP), "--engine", engine, *opts]) == 0
    assert capsys.readouterr().out == "0x32 (50)\n"


def test_run_fault_exit_2(engine, write, capsys):
    assert cli.main(["run", write("f.s", LOAD_DW), "--engine", engine]) == 2
    assert _error_line(capsys) == ("bpfjit: fault: instruction 0: " + NULL_LOAD)


def test_run_instruction_limit(engine, write, capsys):
    path = write("loop.s", LOOP)
    assert cli.main(["run", path, "--engine", engine, "--limit", "20"]) == 2
    assert _error_line(capsys).startswith("bpfjit: fault: instruction ")
    assert cli.main(["run", path, "--engine", engine, "--limit", "0"]) == 0      # 0 = no limit
    assert capsys.readouterr().out == "0x32 (50)\n"


def test_run_cpu_version(engine, write, capsys):
    path = write("sx.s", "mov %r0, 1\nmovsx832 %r0, %r0\nexit\n")
    assert cli.main(["run", path, "--engine", engine, "--cpu", "3"]) == 1
    assert _error_line(capsys) == f"bpfjit: {path}: instruction 1: movsx832 needs CPU v4, configured v3"
    assert cli.main(["run", path, "--engine", engine, "--cpu", "4"]) == 0
    assert capsys.readouterr().out == "0x1 (1)\n"


def test_run_data_file_assembler_error_line(write, capsys):
    path = write("bad.data", "# one\n# two\n-- asm\nmov %r0, 1\nja NOWHERE\nexit\n-- result\n0x1\n")
    assert cli.main(["run", path]) == 1
    assert _error_line(capsys) == f"bpfjit: {path}: line 5: Undefined label 'NOWHERE' ('ja NOWHERE')"


def test_run_data_file_load_error(engine, write, capsys):
    path = write("unused.data", "-- raw\n04 10 00 00 01 00 00 00\n95 00 00 00 00 00 00 00\n-- error\n")
    assert cli.main(["run", path, "--engine", engine]) == 1
    assert _error_line(capsys).startswith(f"bpfjit: {path}: instruction 0: add32: reserved field src")


def test_run_keyboard_interrupt(write, capsys, monkeypatch):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "VM", interrupted)
    assert cli.main(["run", write("p.s", ADD)]) == 130
    assert _error_line(capsys) == "bpfjit: interrupted"


ERRORS = {   # name -> (argv built from a tmp path, expected stderr fragment)
    "missing file": (lambda d: ["run", f"{d}/nope.s"], "nope.s: No such file or directory"),
    "unknown engine": (lambda d: ["run", f"{d}/p.s", "--engine", "ebpf"], "invalid choice: 'ebpf'"),
    "bad --mem": (lambda d: ["run", f"{d}/p.s", "--mem", "zz"], "--mem: not a sequence of hex bytes"),
    "two mems": (lambda d: ["run", f"{d}/p.s", "--mem", "00", "--mem-file", "m"], "not allowed with"),
    "bad --limit": (lambda d: ["run", f"{d}/p.s", "--limit", "ten"], "'ten' is not an integer"),
    "bad --cpu": (lambda d: ["run", f"{d}/p.s", "--cpu", "5"], "invalid choice: 5"),
    "no command": (lambda d: [], "required: COMMAND"),
    "unknown command": (lambda d: ["exec", f"{d}/p.s"], "invalid choice: 'exec'"),
    "truncated binary": (lambda d: ["disasm", f"{d}/trunc.bin"], "bytecode length 13 is not a multiple of 8"),
    "mixed hex": (lambda d: ["disasm", f"{d}/mixed.hex"], "mixes 0x-prefixed 64-bit words"),
    "odd hex": (lambda d: ["disasm", f"{d}/odd.hex"], "not a sequence of hex bytes"),
    "directory as file": (lambda d: ["run", d], "Is a directory"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_one_line(name, tmp_path, write, capsys):
    write("p.s", ADD)
    write("trunc.bin", _code(ADD)[:13])
    write("mixed.hex", "0x95 b7 00\n")
    write("odd.hex", "b70\n")
    argv, fragment = ERRORS[name]
    assert cli.main(argv(str(tmp_path))) == 1
    assert fragment in _error_line(capsys)


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"bpfjit {bpfjit.__version__}\n"


def test_help(capsys):
    assert cli.main(["run", "--help"]) == 0
    assert "--mem-file" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- conformance
DATA_FILES = {
    "ok.data": "-- asm\nmov %r0, 3\nexit\n-- result\n0x3\n",
    "wrong.data": "-- asm\nmov %r0, 3\nexit\n-- result\n0x4\n",
    "rejected.data": "-- raw\n04 10 00 00 01 00 00 00\n95 00 00 00 00 00 00 00\n-- error\n",
    "faults.data": "-- asm\nldxdw %r0, [%r1]\nexit\n-- result\n0x0\n",
    "empty.data": "# nothing\n",
    "not-data.txt": "ignored",
}


def test_conformance_directory(engine, tmp_path, write, capsys):
    for name, text in DATA_FILES.items():
        write(name, text)
    assert cli.main(["conformance", str(tmp_path), "--engine", engine]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "SKIP empty.data: no instructions",
        "FAIL faults.data: instruction 0: " + NULL_LOAD,
        "FAIL wrong.data: r0 0x3, expected 0x4",
        "2 passed, 2 failed, 1 skipped",
    ]


def test_conformance_all_pass_exit_0(engine, tmp_path, write, capsys):
    write("ok.data", DATA_FILES["ok.data"])
    assert cli.main(["conformance", str(tmp_path), "--engine", engine]) == 0
    assert capsys.readouterr().out == "1 passed, 0 failed\n"


@pytest.mark.parametrize("make_dir, fragment", [
    (lambda p: p / "missing", "not a directory"),
    (lambda p: p, "no .data files"),
])
def test_conformance_directory_errors(make_dir, fragment, tmp_path, capsys):
    assert cli.main(["conformance", str(make_dir(tmp_path))]) == 1
    assert fragment in _error_line(capsys)


@pytest.mark.needs_shared(1)
def test_conformance_shared_files(engine, tmp_path, capsys):
    """A sample of the upstream suite, linked into a directory (all 313 files run in test_conformance*.py)."""
    sample = sorted(CONF_TESTS.glob("*.data"))[::16]
    for p in sample:
        (tmp_path / p.name).symlink_to(p)
    assert cli.main(["conformance", str(tmp_path), "--engine", engine]) == 0
    assert capsys.readouterr().out == f"{len(sample)} passed, 0 failed\n"


# ------------------------------------------------------------------------------ installed script
def test_installed_console_script(write):
    script = shutil.which("bpfjit", path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, "-m", "bpfjit"]
    done = subprocess.run([*cmd, "run", write("p.s", ADD), "--mem", "00 00"], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "0x3 (3)\n", "")
    bad = subprocess.run([*cmd, "run", write("f.s", LOAD_DW)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["bpfjit: fault: instruction 0: " + NULL_LOAD]


def test_python_dash_m(write):
    done = subprocess.run([sys.executable, "-m", "bpfjit", "asm", write("p.s", ADD)], capture_output=True,
                          timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, _code(ADD), b"")


# ------------------------------------------------------------------------- bad input, every command
LDDW_FIRST = bytes.fromhex("1801000001000000")     # lddw %r1 without its second slot
BAD_PROGRAMS = {   # name -> (file name, content, expected message after "bpfjit: PATH: ")
    "empty file": ("empty.bin", b"", "empty program"),
    "only comments": ("empty.s", "# nothing here\n\n", "empty program"),
    "truncated lddw (binary)": ("lddw.bin", LDDW_FIRST, "instruction 0: lddw is truncated: its second slot is "
                                "missing"),
    "truncated lddw (hex)": ("lddw.hex", LDDW_FIRST.hex() + "\n", "instruction 0: lddw is truncated"),
    "truncated lddw after exit": ("lddw2.bin", _code("exit") + LDDW_FIRST, "instruction 1: lddw is truncated"),
    "data: bad mem byte": ("m.data", "-- asm\nexit\n-- mem\n00 zz\n",
                           "malformed .data file: line 4: mem byte 'zz' is not a hex number ('00 zz')"),
    "data: mem byte too big": ("m.data", "-- asm\nexit\n-- mem\n100\n",
                               "malformed .data file: line 4: mem byte 100 is out of range (0x0..0xff)"),
    "data: bad raw word": ("r.data", "# x\n-- raw\n0x95\n0xnope\n",
                           "malformed .data file: line 4: raw instruction word '0xnope' is not a hex number"),
    "data: raw word too big": ("r.data", "-- raw\n0x10000000000000000\n",
                               "malformed .data file: line 2: raw instruction word 0x10000000000000000 is out"),
    "data: bad raw byte": ("r.data", "-- raw\n95 0g 00 00 00 00 00 00\n",
                           "malformed .data file: line 2: raw byte '0g' is not a hex number"),
    "data: bad result": ("res.data", "-- asm\nexit\n-- result\nforty\n",
                         "malformed .data file: line 4: result 'forty' is not a number ('forty')"),
    "data: two results": ("res.data", "-- asm\nexit\n-- result\n1 2\n",
                          "malformed .data file: line 4: result: expected one number ('1 2')"),
}


@pytest.mark.parametrize("command", ["asm", "disasm", "run"])
@pytest.mark.parametrize("name", BAD_PROGRAMS)
def test_every_command_refuses_bad_input_alike(command, name, write, capsys):
    file_name, content, message = BAD_PROGRAMS[name]
    path = write(file_name, content)
    assert cli.main([command, path]) == 1
    assert _error_line(capsys).startswith(f"bpfjit: {path}: {message}")


def test_disasm_still_shows_invalid_slots_of_a_complete_program(write, capsys):
    """Only what is not a program at all is refused; an lddw whose second slot is present but not zero is
    shown as invalid, as before."""
    code = LDDW_FIRST + bytes.fromhex("0100000000000000") + _code("exit")
    assert cli.main(["disasm", write("bad2nd.bin", code)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# invalid: opcode 0x18") and out[-1] == "exit"


def test_conformance_reports_a_malformed_data_file(tmp_path, write, capsys):
    write("bad.data", "-- asm\nexit\n-- mem\nzz\n")
    assert cli.main(["conformance", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "FAIL bad.data: cannot read the file: malformed .data file: line 4: mem byte 'zz' is not a hex number "
        "('zz')", "0 passed, 1 failed"]


def test_datafile_error_is_a_bpferror_with_the_line():
    from bpfjit import BPFError, DataFileError
    from bpfjit.datafile import parse
    with pytest.raises(DataFileError) as exc:
        parse("-- asm\nexit\n-- result\n0xq\n")
    assert isinstance(exc.value, BPFError) and exc.value.line_no == 4 and exc.value.line == "0xq"


# ------------------------------------------------------------------------------------------- logging
def test_verbose_shows_the_library_log(tmp_path, write, capsys):
    import logging

    write("ok.data", DATA_FILES["ok.data"])
    assert cli.main(["-vv", "conformance", str(tmp_path), "--engine", "interp"]) == 0
    out, err = capsys.readouterr()
    assert out == "1 passed, 0 failed\n"
    assert "bpfjit: DEBUG bpfjit.conformance: ok.data (interp): pass" in err
    assert logging.getLogger("bpfjit").level == logging.NOTSET                # restored after the command
    assert cli.main(["conformance", str(tmp_path), "--engine", "interp"]) == 0
    assert capsys.readouterr() == ("1 passed, 0 failed\n", "")                  # silent without -v
