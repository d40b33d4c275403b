"""The JIT's compile cache: in memory (a program loaded again is not compiled again) and on disk."""
from __future__ import annotations

from bpfjit import VM, Config, Program
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
