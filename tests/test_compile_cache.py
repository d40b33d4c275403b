"""The JIT compile cache: one module per program (run, run_batch, bench and the tail entry from one
compile), the disk cache (default location, BPFJIT_CACHE_DIR, off with 0, loads in a fresh process,
bounded size, a corrupt entry is recompiled), and where its key comes from."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, Config, Program
from bpfjit.jit import compiler, diskcache

ROOT = Path(__file__).resolve().parents[1]


def _loads():
    return compiler.STATS["compiled"] + compiler.STATS["disk_hits"]


def test_one_compile_serves_run_batch_and_bench():
    prog = Program.from_asm("ldxb %r0, [%r1+1]\nadd %r0, %r2\nexit")
    compiler.clear_cache()
    before = _loads()
    vm = VM(prog, "jit")
    assert vm.run(b"\x01\x05") == 7
    assert _loads() == before + 1
    assert list(vm.run_batch(np.array([[1, 2], [3, 4]], dtype=np.uint8))) == [4, 6]
    assert vm.bench(b"\x00\x09\x00", n=5) == 12
    assert _loads() == before + 1
    assert "bpf_tail_entry" not in vm.engine.compiled.addr     # a VM's program is never a slot's target


def test_tail_call_target_compiles_only_its_tail_entry():
    from bpfjit.helpers import default_registry
    from bpfjit.helpers.map_helpers import register_map_helpers
    from bpfjit.maps import ProgArrayMap
    from bpfjit.runtime import Runtime
    rt = Runtime(Config(safety="checked"), helpers=register_map_helpers(default_registry().copy()))
    pa = ProgArrayMap(2, rt, name="jmp")
    rt.add_map(pa)
    caller = rt.assemble("lddw %r2, map(jmp)\nmov %r3, 0\ncall tail_call\nmov %r0, 1\nexit")
    target = rt.assemble("ldxb %r0, [%r1+0]\nadd %r0, 40\nexit")
    compiler.clear_cache()
    vm = VM(caller, "jit", rt.config, runtime=rt)
    before = _loads()
    pa[0] = target                                     # the target's engine: one compile, the tail entry
    assert _loads() == before + 1
    (engine,) = [e for _, e in pa._engines.values()]
    assert set(engine.compiled.addr) == {"bpf_tail_entry"}
    assert vm.run(b"\x02") == 42
    assert _loads() == before + 1


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("BPFJIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiler.default_cache_dir() == tmp_path / "bpfjit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compiler.default_cache_dir() == tmp_path / "home" / ".cache" / "bpfjit"
    monkeypatch.setenv("BPFJIT_CACHE_DIR", str(tmp_path / "mine"))
    assert compiler.default_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("BPFJIT_CACHE_DIR", "0")
    assert compiler.default_cache_dir() is None


@pytest.fixture
def disk(tmp_path):
    old = compiler.disk_cache_dir()
    compiler.set_disk_cache(tmp_path)
    compiler.clear_cache()
    yield tmp_path
    compiler.set_disk_cache(old)


def test_disk_hit_in_process_and_corrupt_entry_is_recompiled(disk):
    prog = Program.from_asm("mov %r0, 5\nmul %r0, %r2\nexit")
    assert VM(prog, "jit").run(b"abc") == 15
    (obj,) = disk.glob("*.o")
    compiler.clear_cache()
    vm = VM(prog, "jit")
    assert vm.engine.cache_hit and vm.engine.compiled.from_disk and vm.run(b"ab") == 10
    assert "bpf_entry" in vm.engine.ir()                # the IR is rebuilt on demand
    obj.write_bytes(b"garbage")
    compiler.clear_cache()
    vm = VM(prog, "jit")
    assert not vm.engine.cache_hit and vm.run(b"a") == 5


def test_disk_cache_is_bounded(disk, monkeypatch):
    monkeypatch.setattr(diskcache, "LIMIT", 1)        # every new entry evicts all older ones
    for k in range(3):
        VM(Program.from_asm(f"mov %r0, {k}\nexit"), "jit").run()
    assert len(list(disk.glob("*.o"))) <= 1


def test_fresh_process_loads_from_disk(tmp_path):
    # a native helper (its support library must be bound before the cached object links) and a checked load
    code = ("from bpfjit import VM, Program\nfrom bpfjit.jit import compiler\n"
            "p = Program.from_asm('call get_prandom_u32\\nldxb %r0, [%r1+1]\\nexit')\n"
            "vm = VM(p, 'jit')\n"
            "print(vm.run(b'\\x01\\x03'), vm.engine.cache_hit, compiler.STATS['compiled'])\n")
    env = dict(os.environ, BPFJIT_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    outs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    for o in outs:
        assert o.returncode == 0, o.stderr
    assert outs[0].stdout.split() == ["3", "False", "1"]
    assert outs[1].stdout.split() == ["3", "True", "0"]       # the second process compiled nothing


def test_cache_disabled(monkeypatch, tmp_path):
    old = compiler.disk_cache_dir()
    compiler.set_disk_cache(None)
    try:
        compiler.clear_cache()
        VM(Program.from_asm("mov %r0, 77\nexit"), "jit").run()
        assert not list(tmp_path.glob("*"))
    finally:
        compiler.set_disk_cache(old)


def test_key_covers_config_and_host():
    prog = Program.from_asm("mov %r0, 1\nexit")
    keys = {compiler.cache_key(prog.to_bytes(), c) for c in (Config(), Config(opt_level=1), Config(checked=False))}
    assert len(keys) == 3
