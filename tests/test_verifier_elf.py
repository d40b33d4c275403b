"""The verifier over real clang output: every program of every ELF fixture (tests/elf/*.o, loaded as the ELF
tests load them, and the libbpf-style tracing programs of tests/verifier/c/trace_progs.c built for alu32 and
for 64-bit-only CPUs) verifies, or is listed below with the exact reason the kernel would refuse it too;
minimally unsafe variants of the clang programs (an inverted null check, a bound one past the end, a
reference not released) are refused with the kernel's message.

Programs whose type has a row in bpfjit.progtypes.PROG_TYPES are loaded and verified with that row (so new
rows, e.g. the packet types, are covered as soon as they exist); programs of a type without a row are
loaded as "raw" and verified with the test-only row of tests/verifier_cases.py (TEST_ROW_OF). Accepted
kprobe and raw programs also run in checked mode on random inputs in both engines without a fault.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, ObjectFile, Program
from bpfjit.errors import LoadError, RuntimeFault, VerifierError
from bpfjit.progtypes import PROG_TYPES
from bpfjit.runtime import Runtime
from bpfjit.verifier import verify

from .verifier_cases import TEST_PROG_TYPES, TEST_ROW_OF, random_input

FIX = Path(__file__).parent / "elf"
C_DIR = Path(__file__).parent / "verifier" / "c"
OBJECTS = sorted(FIX.glob("*.o")) + sorted(C_DIR.glob("*.o"))

# (fixture, program) -> a substring of the LoadError that refuses it before the verifier runs, and why.
LOAD_REFUSED = {
    # the kernel refuses both too: an unresolved extern call, recursion
    ("extern_call.o", "calls_extern"): "call to unknown extern function 'mystery_func'",
    ("extern_call.o", "calls_recursive"): "recursive bpf-to-bpf calls are not allowed",
}
# (fixture, program) -> a substring of the VerifierError the kernel would refuse it with too (none today).
VERIFY_REFUSED: dict = {}


def _programs():
    out = []
    for path in OBJECTS:
        for name, spec in ObjectFile.open(path).programs.items():
            out.append((path.name, name, spec.prog_type))
    return out


PROGRAMS = _programs()


def _load(fixture: str, name: str, ptype: str):
    """(program, runtime, verify's prog_type) as the ELF tests load it: legacy objects with their own
    kern_version; a type without a PROG_TYPES row as raw, verified with its test-only row."""
    path = FIX / fixture if (FIX / fixture).exists() else C_DIR / fixture
    obj = ObjectFile.open(path)
    rt = Runtime(kern_version=obj.kern_version) if obj.kern_version else Runtime()
    if ptype in PROG_TYPES:
        return obj.load(runtime=rt, programs=[name]).programs[name], rt, None
    row = TEST_PROG_TYPES[TEST_ROW_OF[ptype]]
    loaded = ObjectFile.open(path, prog_types={name: "raw"}).load(runtime=rt, programs=[name])
    return loaded.programs[name], rt, row


def test_every_fixture_program_is_covered():
    """Every fixture program has a program type row (real or test-only): none is silently left out."""
    assert len(PROGRAMS) >= 40 and len({f for f, _, _ in PROGRAMS}) == len(OBJECTS)
    missing = [(f, n, t) for f, n, t in PROGRAMS if t not in PROG_TYPES and t not in TEST_ROW_OF]
    assert missing == []
    assert set(LOAD_REFUSED) | set(VERIFY_REFUSED) <= {(f, n) for f, n, _ in PROGRAMS}


@pytest.mark.parametrize("fixture,name,ptype", PROGRAMS, ids=[f"{f}:{n}" for f, n, _ in PROGRAMS])
def test_fixture_program_verifies(fixture, name, ptype):
    key = (fixture, name)
    if key in LOAD_REFUSED:
        with pytest.raises(LoadError) as ei:
            _load(fixture, name, ptype)
        assert LOAD_REFUSED[key] in str(ei.value)
        return
    prog, rt, row = _load(fixture, name, ptype)
    if key in VERIFY_REFUSED:
        with pytest.raises(VerifierError) as vi:
            verify(prog, runtime=rt, prog_type=row)
        assert VERIFY_REFUSED[key] in vi.value.reason
        return
    res = verify(prog, runtime=rt, prog_type=row, log_level=1)
    assert res.proven and res.insn_processed > 0


RUNNABLE = [(f, n, t) for f, n, t in PROGRAMS
            if t in ("kprobe", "raw") and (f, n) not in LOAD_REFUSED and (f, n) not in VERIFY_REFUSED]


@pytest.mark.parametrize("fixture,name,ptype", RUNNABLE, ids=[f"{f}:{n}" for f, n, _ in RUNNABLE])
def test_verified_fixture_program_runs_without_faults(fixture, name, ptype, engine):
    """What the verifier proved holds at run time: checked mode never faults on random contexts."""
    prog, rt, _ = _load(fixture, name, ptype)
    verify(prog, runtime=rt)
    vm = VM(prog, engine, runtime=rt)
    rng = np.random.default_rng(sum(map(ord, fixture + name)))
    for _ in range(8):
        try:
            if ptype == "kprobe":
                vm.run(random_input(0, rng, "kprobe"), readonly=True)
            else:
                vm.run(random_input(64, rng))
        except RuntimeFault as e:
            assert e.kind == "helper", f"{fixture}:{name} verified but faulted: {e}"


# ------------------------------------------------------------------------------------ unsafe variants
# (object, program, (opcode, imm) of the first instruction to change (after pc 0), its new (opcode, imm),
#  the refusal). Opcodes: 0x15/0x55 jeq/jne imm, 0xa5 jlt imm, 0xb4 mov32 imm, 0x54 and32 imm, 0x85 call.
JEQ, JNE, JLT, MOV32, AND32, CALL = 0x15, 0x55, 0xA5, 0xB4, 0x54, 0x85
BOTH = ("trace_progs.o", "trace_progs_v1.o")
UNSAFE = [(o, *u) for o in BOTH for u in [
    ("cpu_count", (JEQ, 0), (JNE, 0), "R0 invalid mem access 'scalar'"),              # null check inverted
    ("read_hist", (JEQ, 0), (JNE, 0), "R0 invalid mem access 'scalar'"),
    ("write_bytes", (JEQ, 0), (JNE, 0), "R0 invalid mem access 'scalar'"),
    ("spill32", (JEQ, 0), (JNE, 0), "invalid mem access 'scalar'"),
    ("tp_exec", (JEQ, 0), (JNE, 0), "R0 invalid mem access 'scalar'"),
    ("open_event", (JEQ, 0), (JNE, 0), "R6 invalid mem access 'scalar'"),               # ringbuf_reserve's
    ("open_event", (CALL, 132), (CALL, 5), "Unreleased reference"),                     # submit dropped
]] + [("trace_progs.o", *u) for u in [                                                 # alu32 code
    ("checksum", (JLT, 32), (JLT, 33), "invalid read from stack R3 off=0 size=1"),      # loop bound one past
    ("read_hist", (MOV32, 63), (MOV32, 64), "invalid access to map value, value_size=512 off=512 size=8"),
    ("spill32", (AND32, 63), (AND32, 127), "invalid access to map value, value_size=512"),  # index mask widened
]]


@pytest.mark.parametrize("obj,name,old,new,message", UNSAFE,
                         ids=[f"{u[0]}:{u[1]}-{u[2][0]:#x}-{u[3][1]}" for u in UNSAFE])
def test_unsafe_variant_of_clang_program_is_refused(obj, name, old, new, message):
    prog, rt, row = _load(obj, name, ObjectFile.open(C_DIR / obj).programs[name].prog_type)
    insns = list(prog.insns)
    pc = next(pc for pc, i in enumerate(insns) if pc > 0 and (i.opcode, i.imm) == old)
    insns[pc] = insns[pc]._replace(opcode=new[0], imm=new[1])
    bad = Program.from_insns(insns, license=prog.license, kern_version=prog.kern_version,
                             prog_type=prog.prog_type)
    verify(prog, runtime=rt, prog_type=row)
    with pytest.raises(VerifierError) as ei:
        verify(bad, runtime=rt, prog_type=row)
    assert message in ei.value.reason


def test_trace_progs_objects_are_current(tmp_path):
    """tests/verifier/c/trace_progs*.o hold what `make -C tests/verifier/c` builds from trace_progs.c (the
    instructions of every program compared)."""
    import os
    import shutil
    import subprocess
    clang = shutil.which("clang-19")
    objcopy = shutil.which("llvm-objcopy-19") or shutil.which("llvm-objcopy")
    if clang is None or objcopy is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        if os.environ.get("CI"):
            pytest.fail("clang-19, llvm-objcopy and libbpf-dev are required in CI")
        pytest.skip("clang-19 / llvm-objcopy / libbpf-dev not installed: cannot rebuild tests/verifier/c")
    for f in ("trace_progs.c", "Makefile"):
        shutil.copy(C_DIR / f, tmp_path / f)
    subprocess.run(["make", "-s", "-C", str(tmp_path), f"OBJCOPY={objcopy}", "trace_progs.o", "trace_progs_v1.o"],
                   check=True, capture_output=True)
    for o in ("trace_progs.o", "trace_progs_v1.o"):
        new, old = ObjectFile.open(tmp_path / o), ObjectFile.open(C_DIR / o)
        assert {n: p.code for n, p in new.programs.items()} == {n: p.code for n, p in old.programs.items()}, o
