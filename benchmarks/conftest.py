"""Fixtures of the benchmark suite (run with `make bench` or `pytest benchmarks --benchmark-only`; it lives
outside tests/ so the normal test run never collects it).

Session-wide: the JIT's on-disk object cache is off (compile timings must compile), the C baselines are
built once into a temporary directory (or skipped with a message when there is no C compiler), and the
machine info pytest-benchmark stores gains what report.py prints. Workloads live in workloads.py, timing
in harness.py.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
import pytest

if str(Path(__file__).parent) not in sys.path:      # the helper modules, also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

import cbaseline  # noqa: E402
from bpfjit.jit import compiler  # noqa: E402
from workloads import NAMES  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pytest_benchmark_update_machine_info(config, machine_info):
    try:
        cc = cbaseline.compiler_version(cbaseline.find_compiler())
    except cbaseline.NoCompiler:
        cc = None
    machine_info["bpfjit"] = {
        "cpu_model": cpu_model(), "nproc": os.cpu_count(), "llvm_host_cpu": llvm.get_host_cpu_name(),
        "llvmlite": llvmlite.__version__, "cc": cc, "cflags": " ".join(cbaseline.CFLAGS),
    }


@pytest.fixture(scope="session", autouse=True)
def no_disk_cache():
    old = compiler.disk_cache_dir()
    compiler.set_disk_cache(None)
    yield
    compiler.set_disk_cache(old)


@pytest.fixture(scope="session")
def c_baselines(tmp_path_factory) -> dict[str, cbaseline.CBaseline]:
    """name -> the compiled C baseline of every workload."""
    try:
        cc = cbaseline.find_compiler()
    except cbaseline.NoCompiler as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("cbaseline")
    return {name: cbaseline.build(name, out, cc) for name in NAMES}
