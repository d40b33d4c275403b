"""JIT compilation: the compile cache (in memory and on disk), IR and native assembly printing, and code
that calls compiler-runtime functions (libcalls LLVM emits on its own)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bpfjit import VM, Config, Program, RuntimeFault, datafile
from bpfjit.jit import compiler

SRC = "mov %r0, 41\nadd %r0, 1\nexit\n"


def test_memory_cache_hit():
    prog = Program.from_asm(SRC)
    compiler.clear_cache()
    first = VM(prog, "jit")
    again = VM(Program.from_asm(SRC), "jit")
    assert not first.engine.cache_hit and again.engine.cache_hit
    assert again.run() == first.run() == 42


def test_options_are_part_of_the_key():
    prog = Program.from_asm(SRC)
    VM(prog, "jit")
    assert not VM(prog, "jit", Config(opt_level=1)).engine.cache_hit
    assert not VM(prog, "jit", Config(checked=False)).engine.cache_hit


def test_disk_cache_round_trip(tmp_path):
    compiler.set_disk_cache(tmp_path)
    try:
        prog = Program.from_asm(SRC.replace("41", "7"))
        compiler.clear_cache()
        assert VM(prog, "jit").run() == 8
        objects = list(tmp_path.glob("*.o"))
        assert objects, "the compiled object was not written to the disk cache"
        compiler.clear_cache()                  # a new process would only have the disk cache
        assert VM(prog, "jit").run() == 8       # loaded from the object file
    finally:
        compiler.set_disk_cache(None)


def test_ir_and_native_assembly_are_printable():
    vm = VM(Program.from_asm(SRC), "jit")
    assert "bpf_run_mem" in vm.engine.ir() and "define" in vm.engine.ir(optimized=False)
    assert "bpf_run_mem" in vm.engine.native_asm()


REGRESSIONS = Path(__file__).parent / "data" / "regressions"


@pytest.mark.parametrize("opt", [0, 1, 2, 3])
def test_libcall_regression_at_every_level(engine, opt):
    """Code LLVM emits may call compiler-runtime functions (here __udivti3 at -O3): they must be bound."""
    df = datafile.load(REGRESSIONS / "o3-i128-division-libcall.data")
    vm = VM(Program(datafile.insns_of(df)), engine, Config(opt_level=opt))
    with pytest.raises(RuntimeFault) as ei:
        vm.run(df.mem)
    assert (ei.value.kind, ei.value.pc) == ("call_depth", 140)
