"""The `bpf_benchmark` pytest fixture (registered through the `pytest11` entry point as "bpfjit"), on top of
pytest-benchmark, so users time their own BPF programs in their test suites:

    def test_my_filter_speed(bpf_benchmark):
        r0 = bpf_benchmark(program_or_vm, mem, engine="jit")          # times vm.run(mem), returns its r0
        r0 = bpf_benchmark(program_or_vm, mem, mode="loop", repeat=10_000)   # the native loop, per run

`program_or_vm`: a VM, a Program or assembly text (then `engine=`, `config=` and VM keywords such as
`runtime=` apply). mode "call" times one `vm.run(mem)` per round; "loop" times `vm.bench(mem, repeat)` and
reports per-run figures in `extra_info` (ns_per_run). Engine, mode and instruction count go to `extra_info`.
Without pytest-benchmark installed the fixture skips the test with a message. Nothing else lives here.
"""
from __future__ import annotations

import pytest


def _vm(program, engine: str, config, **kw):
    from .program import Config, Program
    from .vm import VM
    if isinstance(program, VM):
        return program
    if isinstance(program, str):
        program = Program.from_asm(program, config or Config())
    return VM(program, engine, config, **kw)


@pytest.fixture
def bpf_benchmark(request):
    """bpf_benchmark(program_or_vm, mem=None, *, engine="jit", config=None, mode="call", repeat=1000, **vm_kw)
    -> r0 of the timed runs (see the module docstring)."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.skip("bpf_benchmark needs pytest-benchmark (pip install pytest-benchmark)")

    def run(program, mem=None, *, engine: str = "jit", config=None, mode: str = "call", repeat: int = 1000,
            **vm_kw):
        vm = _vm(program, engine, config, **vm_kw)
        info = benchmark.extra_info
        info.update(engine=vm.engine_name, mode=mode, insns=len(vm.program.insns))
        if mode == "call":
            return benchmark(vm.run, mem)
        if mode == "loop":
            info["repeat"] = repeat
            r0 = benchmark(vm.bench, mem, repeat)
            stats = getattr(getattr(benchmark, "stats", None), "stats", None)
            if stats is not None:
                info["ns_per_run"] = stats.median * 1e9 / repeat
            return r0
        from .errors import ConfigError
        raise ConfigError(f"must be 'call' or 'loop'; got {mode!r}", "mode")

    return run
