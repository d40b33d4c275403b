"""What a newcomer relies on: everything importable from `bpfjit`, helpers by name, one version source,
packaging metadata, the library logger (and no prints)."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import logging
import pydoc
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import bpfjit
from bpfjit import VM, AssemblerError, BPFError, Program, default_registry, disassemble

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bpfjit"

# name -> the module that defines it (the public name must be that very object)
HOMES = {
    "Program": "bpfjit.program", "Config": "bpfjit.program", "VM": "bpfjit.vm", "ENGINES": "bpfjit.vm",
    "run": "bpfjit.vm", "Runtime": "bpfjit.runtime", "HelperRegistry": "bpfjit.helpers.registry",
    "Helper": "bpfjit.helpers.registry", "HelperContext": "bpfjit.helpers.registry",
    "default_registry": "bpfjit.helpers.defaults", "pt_regs": "bpfjit.progtypes",
    "pt_regs_array": "bpfjit.progtypes", "PT_REGS": "bpfjit.progtypes", "create_map": "bpfjit.maps",
    "MapBase": "bpfjit.maps", "MapError": "bpfjit.maps", "BPF_ANY": "bpfjit.maps",
    "BPF_NOEXIST": "bpfjit.maps", "BPF_EXIST": "bpfjit.maps", "DataFileError": "bpfjit.datafile",
    **{e: "bpfjit.errors" for e in ("BPFError", "AssemblerError", "LoadError", "VerifierError", "ELFError",
                                    "ConfigError", "RuntimeFault")},
}
MAP_CLASSES = ("ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap", "LruPercpuHashMap",
               "ProgArrayMap", "RingBufMap", "PerfEventArrayMap", "QueueMap", "StackMap", "LpmTrieMap",
               "DevMap", "DevMapHash", "CpuMap", "XskMap", "ArrayOfMapsMap", "HashOfMapsMap")
ERRORS = ("BPFError", "AssemblerError", "LoadError", "VerifierError", "ELFError", "ConfigError",
          "RuntimeFault", "MapError", "DataFileError", "PcapError")


# ------------------------------------------------------------------------------------------ exports
def test_all_names_resolve_to_their_definitions():
    for name in bpfjit.__all__:
        assert getattr(bpfjit, name) is not None, name
    for name, module in HOMES.items():
        assert name in bpfjit.__all__, name
        assert getattr(bpfjit, name) is getattr(importlib.import_module(module), name), name


def test_every_map_class_is_exported():
    import bpfjit.maps
    assert set(MAP_CLASSES) <= set(bpfjit.__all__)
    assert {getattr(bpfjit, n) for n in MAP_CLASSES} == set(bpfjit.maps.MAP_CLASSES.values())


def test_errors_derive_from_bpferror():
    for name in ERRORS:
        assert name in bpfjit.__all__
        assert issubclass(getattr(bpfjit, name), BPFError), name


def test_star_import_and_dir():
    ns: dict = {}
    exec("from bpfjit import *", ns)
    assert set(bpfjit.__all__) <= set(ns)
    assert set(bpfjit.__all__) <= set(dir(bpfjit))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        bpfjit.NoSuchThing  # noqa: B018


def test_help_lists_every_public_name():
    text = pydoc.render_doc(bpfjit, renderer=pydoc.plaintext)
    missing = [n for n in bpfjit.__all__ if n != "__version__" and n not in text]
    assert not missing, f"help(bpfjit) does not mention {missing}"


def test_import_is_lazy_about_runtime_and_maps():
    """`import bpfjit` does not load the runtime, the maps or the helper libraries until they are used."""
    code = ("import sys, bpfjit; heavy = [m for m in ('bpfjit.runtime', 'bpfjit.maps', 'bpfjit.helpers.builtin') "
            "if m in sys.modules]; print(heavy); bpfjit.HashMap; print('bpfjit.maps' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_readme_quick_example_from_the_package(engine):
    from bpfjit import HashMap, Runtime, pt_regs
    rt = Runtime()
    counts = HashMap(4, 8, 16)
    rt.add_map(counts, "counts")
    prog = rt.assemble("lddw %r1, map(counts)\nmov %r0, 7\nexit", prog_type="kprobe", license="GPL",
                       kern_version=rt.kern_version)
    assert rt.kprobe(prog, engine).fire(pt_regs(di=3)) == 7


# ------------------------------------------------------------------------------------ helpers by name
def _double_registry():
    reg = default_registry().copy()

    @reg.helper(300)
    def double(ctx, r1, r2, r3, r4, r5):
        return r1 * 2
    return reg


DOUBLE = "mov %r1, 21\ncall double\nexit\n"


def test_call_registered_helper_by_name(engine):
    reg = _double_registry()
    prog = Program.from_asm(DOUBLE, helpers=reg)
    assert prog.insns[1].imm == 300
    assert VM(prog, engine, helpers=reg).run() == 42


def test_assemble_accepts_a_registry_or_a_mapping(engine):
    reg = _double_registry()
    for helpers in (reg, {"double": 300}):
        prog = bpfjit.assemble(DOUBLE, helpers=helpers)
        assert VM(prog, engine, helpers=reg).run() == 42


def test_disassembler_prints_names_from_the_registry():
    reg = _double_registry()
    prog = Program.from_asm(DOUBLE + "call ktime_get_ns\ncall 999\nexit\n", helpers=reg)
    text = disassemble(prog, helpers=reg)
    assert text == DOUBLE + "call ktime_get_ns\ncall 999\nexit\n"
    assert Program.from_asm(text, helpers=reg) == prog
    assert disassemble(prog) == "mov %r1, 21\ncall 300\nexit\ncall 5\ncall 999\nexit\n"   # no registry: ids


def test_disassembler_never_prints_a_name_that_reads_back_as_a_register():
    reg = default_registry().copy()
    reg.helper(301, name="r1")(lambda ctx, *a: 0)
    assert disassemble(Program.from_asm("call 301\nexit"), helpers=reg) == "call 301\nexit\n"


def test_call_btf_stays_numeric():
    reg = _double_registry()
    assert disassemble(Program.from_asm("call btf 300\nexit"), helpers=reg) == "call btf 300\nexit\n"


def test_unknown_helper_message_without_registry():
    with pytest.raises(AssemblerError) as exc:
        Program.from_asm(DOUBLE)
    msg = str(exc.value)
    assert exc.value.line_no == 2
    assert "Unknown helper 'double'" in msg and "ktime_get_ns" in msg and "pass helpers=your_registry" in msg


def test_unknown_helper_message_with_registry_suggests_a_name():
    with pytest.raises(AssemblerError) as exc:
        Program.from_asm("call doble\nexit", helpers=_double_registry())
    msg = str(exc.value)
    assert "Unknown helper 'doble' (did you mean 'double'?)" in msg and "registered in helpers=" in msg


def test_helpers_of_the_wrong_type():
    with pytest.raises(TypeError, match="HelperRegistry or a mapping"):
        bpfjit.assemble("exit", helpers=42)


# ------------------------------------------------------------------------------------------ version
def test_version_comes_from_the_installed_metadata():
    assert bpfjit.__version__ == importlib.metadata.version("bpfjit")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert bpfjit.__version__ == project["version"]


def test_version_fallback_when_not_installed(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert bpfjit._version() == "0+unknown"


def test_version_is_written_only_in_pyproject():
    literal = bpfjit.__version__
    for path in PACKAGE.rglob("*.py"):
        assert f'"{literal}"' not in path.read_text(), f"{path} repeats the version"


# ---------------------------------------------------------------------------------------- packaging
def test_packaging_metadata():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["bpfjit"]
    assert "mypy" in " ".join(pyproject["project"]["optional-dependencies"]["test"])


# ------------------------------------------------------------------------------------------ logging
def test_library_logger_is_silent_by_default():
    logger = logging.getLogger("bpfjit")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    from bpfjit.log import get_logger
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = seen.append          # type: ignore[method-assign]
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        get_logger("bpfjit.jit.compiler").debug("compiled in %d ms", 12)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [(r.name, r.getMessage()) for r in seen] == [("bpfjit.jit.compiler", "compiled in 12 ms")]
    assert get_logger("__main__").name == "bpfjit.__main__"          # python -m bpfjit.conformance


def test_library_never_prints():
    """Only the command-line front ends write to stdout/stderr; everything else logs."""
    allowed = {"cli.py", "cliinput.py", "conformance.py", "benchcli.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders


def test_replacing_a_helper_is_logged(caplog):
    reg = default_registry().copy()
    with caplog.at_level(logging.INFO, logger="bpfjit"):
        reg.helper(5, name="my_clock")(lambda ctx, *a: 1)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("bpfjit.helpers.registry", "helper 5: my_clock replaces ktime_get_ns")]
