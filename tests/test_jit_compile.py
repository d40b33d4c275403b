"""JIT compilation: the compile cache (in memory and on disk), IR and native assembly printing, and code
that calls compiler-runtime functions (libcalls LLVM emits on its own)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bpfjit import VM, Config, Program, RuntimeFault, datafile
from bpfjit.jit import compiler, diskcache

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


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    """The second compile must READ the object file (not merely recompile to the same result): every read of
    the disk cache is counted, and the object is swapped for another program's to prove it is what runs."""
    reads = []
    real = diskcache.load

    def spy(key):
        found = real(key)
        reads.append((key, found is not None))
        return found
    monkeypatch.setattr(diskcache, "load", spy)
    compiler.set_disk_cache(tmp_path)
    try:
        prog = Program.from_asm(SRC.replace("41", "7"))
        other = Program.from_asm(SRC.replace("41", "99"))
        compiler.clear_cache()
        assert VM(prog, "jit").run() == 8
        assert reads and not any(hit for _, hit in reads), "the first compile found an object it never wrote"
        objects = list(tmp_path.glob("*.o"))
        assert len(objects) == 1, "the compiled object was not written to the disk cache"
        compiler.clear_cache()                  # a new process would only have the disk cache
        reads.clear()
        vm = VM(prog, "jit")
        assert reads == [(objects[0].stem, True)], "the second compile did not read the disk cache"
        assert vm.run() == 8                    # loaded from the object file
        # the object file really is what runs: put another program's object under this key
        compiler.clear_cache()
        VM(other, "jit")
        other_obj = [p for p in tmp_path.glob("*.o") if p != objects[0]]
        assert len(other_obj) == 1
        objects[0].write_bytes(other_obj[0].read_bytes())
        objects[0].with_suffix(".json").write_bytes(other_obj[0].with_suffix(".json").read_bytes())
        compiler.clear_cache()
        assert VM(prog, "jit").run() == 100
    finally:
        compiler.set_disk_cache(None)
        compiler.clear_cache()


_SECOND_PROCESS = """
import sys
from bpfjit import VM, Program
from bpfjit.jit import compiler, diskcache
reads = []
real = diskcache.load
def spy(key):
    found = real(key)
    reads.append(found is not None)
    return found
diskcache.load = spy
compiler.set_disk_cache(sys.argv[1])
print(VM(Program.from_asm(sys.argv[2]), "jit").run(), any(reads), all(reads))
"""


def test_disk_cache_is_read_by_a_second_process(tmp_path):
    import subprocess
    import sys
    src = SRC.replace("41", "11")
    root = Path(__file__).resolve().parents[1]
    outs = [subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(tmp_path), src], capture_output=True,
                           text=True, timeout=120, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})
            for _ in range(2)]
    # the first process finds nothing and writes; the second reads every module it needs from the disk
    assert [o.stdout.strip() for o in outs] == ["12 False False", "12 True True"], [o.stderr[-500:] for o in outs]


def test_ir_and_native_assembly_are_printable():
    vm = VM(Program.from_asm(SRC), "jit")
    assert "bpf_entry" in vm.engine.ir() and "define" in vm.engine.ir(optimized=False)
    assert "bpf_entry" in vm.engine.native_asm()


REGRESSIONS = Path(__file__).parent / "data" / "regressions"


@pytest.mark.parametrize("opt", [0, 1, 2, 3])
def test_libcall_regression_at_every_level(engine, opt):
    """Code LLVM emits may call compiler-runtime functions (here __udivti3 at -O3): they must be bound."""
    df = datafile.load(REGRESSIONS / "o3-i128-division-libcall.data")
    vm = VM(Program(datafile.insns_of(df)), engine, Config(opt_level=opt))
    with pytest.raises(RuntimeFault) as ei:
        vm.run(df.mem)
    assert (ei.value.kind, ei.value.pc) == ("call_depth", 140)
