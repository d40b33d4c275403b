"""Shared fixtures: the engine parameter every behaviour test runs under, and the shared data paths."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The JIT's disk cache is on by default in the user's cache directory: the suite (and the processes it
# starts) use a temporary one instead, removed at exit.
os.environ["BPFJIT_CACHE_DIR"] = _CACHE_DIR = tempfile.mkdtemp(prefix="bpfjit-test-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, True)

import pytest

from bpfjit import VM, Config, Program

ENGINES = ("interp", "jit")


def shared_dir() -> Path | None:
    """../shared next to the project (CI lays a copy there)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd().parent):
        p = base / "shared"
        if p.is_dir():
            return p
    return None


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def run_asm(engine):
    """run_asm(text, mem=None, config=None, **vm_kw) -> r0 in the current engine."""
    def _run(text, mem=None, config=None, **kw):
        cfg = config or Config()
        prog = Program.from_asm(text, cfg)
        return VM(prog, engine, cfg, **kw).run(mem)
    return _run
