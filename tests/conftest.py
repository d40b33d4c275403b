"""Shared fixtures: the engine parameter every behaviour test runs under, and the shared data paths.

Tests that need ../shared (the bpf_conformance suite) carry the `needs_shared(n)` marker, n = how many tests
the item stands for (a parametrized test whose files are absent collapses into one placeholder item). When
../shared is absent, such a test FAILS if the environment variable CI is set (CI must run the suite) and is
skipped otherwise; the terminal summary then says loudly how many tests did not run.
"""
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
SHARED_ABSENT = "../shared/conformance is absent: the conformance suite cannot run here"


def shared_dir() -> Path | None:
    """../shared next to the project (CI lays a copy there)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd().parent):
        p = base / "shared"
        if (p / "conformance").is_dir():
            return p
    return None


def shared_params(files: list, n: int, ids=None) -> list:
    """pytest params for `files` of ../shared, or one placeholder (None) standing for the `n` absent tests."""
    if files:
        return [pytest.param(p, id=ids(p) if ids else None) for p in files]
    return [pytest.param(None, id="shared-absent", marks=pytest.mark.needs_shared(n))]


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared(n): needs ../shared/conformance; stands for n tests")
    config.stash[_NOT_RUN] = [0, 0]


_NOT_RUN = pytest.StashKey[list]()


def pytest_runtest_setup(item):
    mark = item.get_closest_marker("needs_shared")
    if mark is None or shared_dir() is not None:
        return
    n = mark.args[0] if mark.args else 1
    if os.environ.get("CI"):
        pytest.fail(f"{SHARED_ABSENT} and CI is set: the conformance suite must run in CI ({n} tests)",
                    pytrace=False)
    counts = item.config.stash[_NOT_RUN]
    counts[0] += n
    counts[1] += 1
    pytest.skip(f"{SHARED_ABSENT} ({n} tests)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n, items = config.stash.get(_NOT_RUN, [0, 0])
    if n:
        terminalreporter.section("CONFORMANCE SUITE NOT RUN", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"{n} conformance tests DID NOT RUN ({items} skipped placeholders): ../shared/conformance is absent. "
            "Lay the bpf_conformance suite next to the project; with CI set these are failures.",
            red=True, bold=True)


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
