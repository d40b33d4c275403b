"""Every bpf_conformance test file (../shared/conformance) and our own tests/data/*.data, in both engines.

A conformance file must pass at CPU v4 with every group enabled; there is no skip list.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bpfjit import VM, BPFError, Config, LoadError, Program, RuntimeFault, datafile

from .conftest import shared_dir, shared_params

SHARED = shared_dir()
CONF = SHARED / "conformance" if SHARED else None
OWN = Path(__file__).parent / "data"


def _files(folder: Path | None, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder and folder.is_dir() else []


CONF_FILES = _files(CONF / "tests" if CONF else None, "*.data")
UNUSED_FILES = _files(CONF / "negative" if CONF else None, "unused-*.data")
OWN_FILES = _files(OWN, "*.data")
CONFIG = Config(cpu=4)


def _run_file(path: Path, engine: str):
    df = datafile.load(path)
    prog = Program(datafile.insns_of(df))
    if df.error is not None and df.result is None:
        with pytest.raises(BPFError):
            prog.validate(CONFIG)
            VM(prog, engine, CONFIG).run(df.mem if df.has_mem else None)
        return
    prog.validate(CONFIG)
    r0 = VM(prog, engine, CONFIG).run(df.mem if df.has_mem else None)
    assert r0 == df.result, f"{path.name}: r0 {r0:#x} != expected {df.result:#x}"


@pytest.mark.needs_shared(1)
def test_conformance_suite_present():
    assert len(CONF_FILES) == 313
    assert len(UNUSED_FILES) == 45


@pytest.mark.parametrize("path", shared_params(CONF_FILES, 313, lambda p: p.stem))
def test_conformance(path, engine):
    _run_file(path, engine)


@pytest.mark.parametrize("path", shared_params(UNUSED_FILES, 45, lambda p: p.stem))
def test_unused_fields_rejected(path):
    df = datafile.load(path)
    with pytest.raises(LoadError) as ei:
        Program.from_bytes(df.raw, CONFIG)
    assert ei.value.pc is not None and ei.value.field is not None


def _own_expectation(df):
    """Own files may expect a fault: `-- error` holds `fault KIND PC` or `load` (a LoadError)."""
    return df.error.split() if df.error else None


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: p.stem)
def test_own_data(path, engine):
    df = datafile.load(path)
    exp = _own_expectation(df)
    if exp and exp[0] == "load":
        with pytest.raises(LoadError):
            prog = Program(datafile.insns_of(df))
            prog.validate(CONFIG)
            VM(prog, engine, CONFIG)
        return
    prog = Program(datafile.insns_of(df))
    prog.validate(CONFIG)
    vm = VM(prog, engine, CONFIG)
    if exp and exp[0] == "fault":
        with pytest.raises(RuntimeFault) as ei:
            vm.run(df.mem if df.has_mem else None)
        assert ei.value.kind == exp[1], str(ei.value)
        assert ei.value.pc == int(exp[2]), str(ei.value)
        return
    assert vm.run(df.mem if df.has_mem else None) == df.result
