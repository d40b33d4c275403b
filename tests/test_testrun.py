"""vm.test_run (BPF_PROG_TEST_RUN): retval, data_out / ctx_out, duration, repeat; raw and kprobe programs;
the caller's buffer is never changed; bad input is a ConfigError. Both engines."""
from __future__ import annotations

import numpy as np
import pytest

from bpfjit import VM, ConfigError, Program, pt_regs

# adds 1 to the first byte of mem and returns the new value
INC = """
ldxb r2, [r1+0]
add r2, 1
stxb [r1+0], r2
mov r0, r2
exit
"""


def vm_of(text: str, engine: str, **meta) -> VM:
    return VM(Program.from_asm(text, **meta), engine)


def test_data_in_out_and_repeat(engine):
    vm = vm_of(INC, engine)
    data = bytes([5, 9, 9])
    res = vm.test_run(data_in=data, repeat=10)
    assert res.retval == 15 and res.data_out == bytes([15, 9, 9]) and res.ctx_out is None
    assert res.repeat == 10 and isinstance(res.duration, int) and res.duration >= 0
    assert data == bytes([5, 9, 9])                  # a copy was run


def test_ctx_in_is_the_mem_of_a_raw_program(engine):
    vm = vm_of(INC, engine)
    buf = np.array([1, 2], dtype=np.uint8)
    res = vm.test_run(ctx_in=buf)
    assert res.retval == 2 and res.ctx_out == bytes([2, 2]) and res.data_out is None
    assert list(buf) == [1, 2]


def test_repeat_zero_means_one_and_no_input(engine):
    vm = vm_of("mov r0, 42\nexit", engine)
    res = vm.test_run(repeat=0)
    assert (res.retval, res.data_out, res.ctx_out, res.repeat) == (42, None, None, 1)


def test_kprobe_ctx_in_is_pt_regs(engine):
    vm = vm_of("ldxdw r0, [r1+112]\nadd r0, 1\nexit", engine, prog_type="kprobe")   # di
    regs = pt_regs(di=41)
    res = vm.test_run(ctx_in=regs.tobytes(), repeat=3)
    assert res.retval == 42 and res.ctx_out == regs.tobytes() and res.data_out is None
    assert vm.test_run().retval == 1                      # a zeroed pt_regs when ctx_in is absent
    with pytest.raises(ConfigError, match="takes no data_in"):
        vm.test_run(data_in=b"x")
    with pytest.raises(ConfigError, match="168 bytes"):
        vm.test_run(ctx_in=b"short")


def test_bad_arguments(engine):
    vm = vm_of(INC, engine)
    with pytest.raises(ConfigError, match="not both"):
        vm.test_run(data_in=b"a", ctx_in=b"a")
    with pytest.raises(ConfigError, match="repeat"):
        vm.test_run(data_in=b"a", repeat=-1)
    with pytest.raises(ConfigError, match="repeat"):
        vm.test_run(data_in=b"a", repeat="3")
    with pytest.raises(ConfigError, match="data_in"):
        vm.test_run(data_in=[1, 2])
