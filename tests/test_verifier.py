"""The static verifier (bpfjit/verifier): the data-driven rule cases of tests/verifier/*.txt (every rule
with a passing program and a minimally different failing one), the log and result API, soundness of the
scalar transfer functions on random values, and the differential check that every program the verifier
accepts runs without faults in checked mode in both engines (a verifier that accepts a faulting program is
a bug)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bpfjit import VM, Program, datafile
from bpfjit.errors import BPFError, RuntimeFault, VerifierError
from bpfjit.isa import Insn, form_of
from bpfjit.verifier import VerifierResult, verify
from bpfjit.verifier import scalar as S
from bpfjit.verifier import tnum as T

from . import progen, verifier_gen
from .verifier_cases import TEST_PROG_TYPES, build, case_runtime, load_cases, random_input

CASES = load_cases()
# run here: the program types bpfjit runs (test_* packet types are verified here, run in test_verifier_packet)
ACCEPTED = [c for c in CASES if c.accept and c.options.get("prog_type") not in TEST_PROG_TYPES]
RT = case_runtime()


def test_every_group_has_passing_and_failing_cases():
    groups = {c.file for c in CASES}
    assert {"stack", "ctx", "helpers", "maps", "loops", "calls", "alu_ptr", "seed", "refs", "cfg", "packet",
            "ctx_fields", "ldabs", "retcode"} <= groups
    for g in groups:
        kinds = {c.accept for c in CASES if c.file == g}
        assert kinds == {True, False}, g


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case):
    prog, kw = build(case, RT)
    if case.accept:
        res = verify(prog, runtime=RT, **kw)
        assert res.proven and res.insn_processed > 0
        return
    with pytest.raises(VerifierError) as ei:
        verify(prog, runtime=RT, **kw)
    assert case.message in ei.value.reason
    assert ei.value.pc == case.pc
    assert case.message in ei.value.log


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_accepted_case_runs_without_faults(case, engine):
    """What the verifier proves holds at run time: checked mode never faults on any input of the size."""
    prog, kw = build(case, RT)
    vm = VM(prog, engine, runtime=RT)
    rng = np.random.default_rng(abs(hash(case.id)) % (1 << 32))
    for _ in range(4):
        if prog.prog_type == "kprobe":
            vm.run(random_input(0, rng, "kprobe"), readonly=True)
        else:
            vm.run(random_input(kw.get("mem_size", 0), rng))
    RT.events.drain()
    for m in RT.maps.values():
        if hasattr(m, "drain"):
            m.drain()


# ------------------------------------------------------------------------------------ API and log
LOOP = """
mov %r0, 0
mov %r1, 0
add %r0, %r1
add %r1, 1
jlt %r1, 3, -3
exit
"""


def test_result_fields():
    res = verify(Program.from_asm(LOOP))
    assert isinstance(res, VerifierResult)
    assert res.proven and res.insn_processed == 12 and res.total_states >= 1 and res.max_states_per_insn >= 1
    assert res.log == ""
    assert res.access_types == {}


def test_result_access_types():
    prog = Program.from_asm("""
        ldxb %r2, [%r1+0]
        stxdw [%r10-8], %r2
        ldxdw %r0, [%r10-8]
        exit
    """)
    res = verify(prog, mem_size=1)
    assert res.access_types == {0: frozenset({"mem"}), 1: frozenset({"fp"}), 2: frozenset({"fp"})}
    assert res.stack_depth == ((0, 8),) and res.mem_size == 1


def test_log_level_2_has_every_instruction_with_state():
    log = verify(Program.from_asm(LOOP), log_level=2).log
    assert "0: (b7) r0 = 0 ; R0_w=0" in log
    assert "3: (07) r1 += 1 ; R1_w=1\n4: (a5) if r1 < 0x3 goto pc-3\n2: (0f) r0 += r1 ; R0_w=1" in log
    assert "processed 12 insns (limit 1000000)" in log


def test_log_level_2_branches():
    prog = Program.from_asm("""
        ldxb %r0, [%r1+0]
        jgt %r0, 7, +1
        mov %r0, 0
        exit
    """)
    log = verify(prog, mem_size=1, log_level=2).log
    assert "from 1 to 3: R0=scalar(umin=8,umax=255,var_off=(0x0; 0xff))" in log
    assert "2: (b7) r0 = 0 ; R0_w=0" in log


def test_log_level_1_is_the_failing_path():
    prog = Program.from_asm("""
        ldxb %r0, [%r1+0]
        jgt %r0, 7, +2
        mov %r0, 0
        exit
        ldxdw %r0, [%r10-8]
        exit
    """)
    with pytest.raises(VerifierError) as ei:
        verify(prog, mem_size=1, log_level=1)
    e = ei.value
    assert e.pc == 4 and e.reason == "invalid read from stack off -8+0 size 8"
    lines = e.log.splitlines()
    assert lines == ["0: (71) r0 = *(u8 *)(r1 +0)", "1: (25) if r0 > 0x7 goto pc+2",
                     "4: (79) r0 = *(u64 *)(r10 -8)", "invalid read from stack off -8+0 size 8"]
    assert "instruction 4: invalid read from stack" in str(e)


def test_log_level_0_error_still_has_the_message():
    with pytest.raises(VerifierError) as ei:
        verify(Program.from_asm("exit"))
    assert ei.value.log == "R0 !read_ok\n"


def test_instruction_budget():
    prog = Program.from_asm("""
        mov %r3, 0
        ldxb %r2, [%r1+0]
        add %r3, 1
        jne %r2, 0, -2
        mov %r0, %r3
        exit
    """)
    with pytest.raises(VerifierError) as ei:
        verify(prog, mem_size=1, insn_limit=2000)
    assert ei.value.reason == "BPF program is too large. Processed 2001 insn"


def test_jump_into_the_middle_of_lddw():
    # Program validation refuses this too; the verifier checks it on its own (bypassing validation).
    prog = Program.from_asm("lddw %r0, 1\nexit")
    insns = [Insn(0x05, 0, 0, 1, 0)] + prog.insns
    bad = Program(insns)
    bad._forms = [form_of(insns[0])] + prog.forms
    with pytest.raises(VerifierError) as ei:
        verify(bad)
    assert ei.value.reason == "jump into the middle of ldimm64 insn 2"


def test_allow_loops_from_config():
    class Cfg:
        stack_size, max_call_depth, allow_loops = 512, 8, False
    with pytest.raises(VerifierError, match="back-edge from insn 4 to 2"):
        verify(Program.from_asm(LOOP), config=Cfg())


def test_bad_mem_size():
    from bpfjit.errors import ConfigError
    with pytest.raises(ConfigError):
        verify(Program.from_asm("mov %r0, 0\nexit"), mem_size=-1)


# ------------------------------------------------------------------------------------ soundness
def _random_scalar(rnd):
    k = rnd.randrange(4)
    if k == 0:
        return S.const(rnd.getrandbits(64))
    if k == 1:
        lo = rnd.getrandbits(rnd.choice((8, 16, 32, 64)))
        return S.unsigned_range(lo, min(S.M64, lo + rnd.getrandbits(rnd.choice((4, 12, 40)))))
    if k == 2:
        lo = rnd.randint(-(1 << 40), 1 << 40)
        return S.signed_range(lo, lo + rnd.getrandbits(20))
    m = rnd.getrandbits(64) & rnd.getrandbits(64)
    return S.make((rnd.getrandbits(64) & ~m & S.M64, m), 0, S.M64, S.S64MIN, S.S64MAX, 0, S.M32, S.S32MIN,
                  S.S32MAX)


def _member(rnd, s):
    for _ in range(50):
        v = (s.t[0] | (rnd.getrandbits(64) & s.t[1]))
        if rnd.random() < 0.3:
            v = rnd.choice((s.umin, s.umax, s.smin & S.M64, s.smax & S.M64))
        if _in(s, v):
            return v
    return None


def _in(s, v):
    return (s.umin <= v <= s.umax and s.smin <= S.sx64(v) <= s.smax and s.u32min <= (v & S.M32) <= s.u32max
            and s.s32min <= S.sx32(v) <= s.s32max and (v & ~s.t[1] & S.M64) == s.t[0])


OPS = ("add", "sub", "mul", "div", "mod", "or", "and", "xor", "lsh", "rsh", "arsh", "sdiv", "smod", "mov")


def test_alu_transfer_functions_are_sound():
    rnd = random.Random(11)
    for _ in range(6000):
        a, b = _random_scalar(rnd), _random_scalar(rnd)
        if rnd.random() < 0.5:
            b = S.const(rnd.randrange(70))
        x, y = _member(rnd, a), _member(rnd, b)
        if x is None or y is None:
            continue
        op, w = rnd.choice(OPS), rnd.choice((32, 64))
        r = S.alu(op, a, b, w)
        assert _in(r, S.fold(op, x, y, w)), (op, w, a.fmt(), b.fmt(), x, y, r.fmt())


def test_branch_refinement_is_sound():
    rnd = random.Random(12)
    ops = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset")
    for _ in range(6000):
        a, b = _random_scalar(rnd), _random_scalar(rnd)
        if rnd.random() < 0.5:
            b = S.const(rnd.choice((0, 1, 7, 255, 1 << 31, S.M64)))
        x, y = _member(rnd, a), _member(rnd, b)
        if x is None or y is None:
            continue
        op, w = rnd.choice(ops), rnd.choice((32, 64))
        m = S.LIMITS[w][0]
        xs, ys = S.sx(x, w), S.sx(y, w)
        xu, yu = x & m, y & m
        truth = {"jeq": xu == yu, "jne": xu != yu, "jgt": xu > yu, "jge": xu >= yu, "jlt": xu < yu,
                 "jle": xu <= yu, "jsgt": xs > ys, "jsge": xs >= ys, "jslt": xs < ys, "jsle": xs <= ys,
                 "jset": bool(xu & yu)}[op]
        r = S.refine(op, a, b, w, truth)
        assert r is not None and _in(r[0], x) and _in(r[1], y), (op, w, a.fmt(), b.fmt(), x, y, truth)


def test_tnum_range_and_arith():
    assert T.trange(0, 255) == (0, 0xFF)
    assert T.trange(4, 4) == (4, 0)
    assert T.add((0, 1), (1, 0)) == (0, 3) or T.contains(T.add((0, 1), (1, 0)), (1, 0))
    assert T.contains((0, 0xFF), (0x10, 0x0F)) and not T.contains((0, 0x0F), (0x10, 0))


# ------------------------------------------------------------------------------------ differential
# progen's generator, restricted to what a kernel-style verifier can accept: no deliberately dead code
# ("skip", "exit"), no lddw pseudo sources (constants here), no local calls (its callees read caller
# registers, which the kernel model does not pass); a prologue initialises r0, r3-r9 (0 in bpfjit anyway),
# or, for a program refused only for LD_ABS without the context in r6, r0, r3-r5, r7-r9 and r6 = r1.
PROGEN_WEIGHTS = {"alu": 30, "swap": 4, "mem": 22, "lddw": 3, "packet": 4, "cond": 9, "loop": 6, "helper": 4}
PROLOGUE = [Insn(0xB7, r, 0, 0, 0) for r in (0, 3, 4, 5, 6, 7, 8, 9)]
PROLOGUE_CTX_R6 = [Insn(0xB7, r, 0, 0, 0) for r in (0, 3, 4, 5, 7, 8, 9)] + [Insn(0xBF, 6, 1, 0, 0)]
_PROGEN_ACCEPTED: list = []


def _progen_accepted():
    if not _PROGEN_ACCEPTED:
        rnd = random.Random(2024)
        for _ in range(1000):
            case = progen.Generator(progen.RandomSource(rnd), size=12, budget=3000, n_mems=2,
                                    weights=PROGEN_WEIGHTS).case()
            for prologue in (PROLOGUE, PROLOGUE_CTX_R6):
                prog = Program.from_insns(prologue + list(case.insns), case.config)
                try:
                    verify(prog, helpers=progen.FUZZ_HELPERS, config=case.config, mem_size=case.mem_len)
                except VerifierError as e:
                    if "BPF_LD_ABS|IND R6" in e.reason:
                        continue
                    break
                _PROGEN_ACCEPTED.append((case, prog))
                break
    return _PROGEN_ACCEPTED


def _runs_clean(vm, prog, mems):
    for mem in mems:
        try:
            vm.run(mem)
        except RuntimeFault as e:     # a Python helper refusing an argument value is not a memory fault
            assert e.kind == "helper", f"verified program faulted: {e}\n{prog.disassemble()}"


def test_differential_progen_accepted_never_fault(engine):
    accepted = _progen_accepted()
    assert len(accepted) >= 10
    rng = np.random.default_rng(7)
    for case, prog in accepted:
        run = case.with_limit(None) if engine == "jit" else case.with_limit(10_000_000)
        vm = progen.make_vm(run, engine, prog)
        mems = [np.frombuffer(m, np.uint8).copy() for m in case.mems] + \
               [random_input(case.mem_len, rng) for _ in range(2)]
        _runs_clean(vm, prog, mems)


def test_differential_edge_programs_accepted_never_fault(engine):
    """tests/verifier_gen.py: accesses near the end of memory, masked and compared indexes, stack reads."""
    rnd = random.Random(99)
    rng = np.random.default_rng(99)
    accepted = refused = 0
    for _ in range(250):
        src, size = verifier_gen.generate(rnd)
        prog = Program.from_asm(src)
        try:
            verify(prog, mem_size=size)
        except VerifierError:
            refused += 1
            continue
        accepted += 1
        mems = [random_input(size, rng) for _ in range(4)] + [np.zeros(size, np.uint8),
                                                              np.full(size, 0xFF, np.uint8)]
        _runs_clean(VM(prog, engine), prog, mems)
    assert accepted >= 40 and refused >= 40


def _data_files():
    from .conftest import shared_dir
    files = sorted((Path(__file__).parent / "data").glob("*.data"))
    shared = shared_dir()
    if shared is not None:
        files += sorted((shared / "conformance").rglob("*.data"))
    return files


def test_differential_data_files_accepted_never_fault(engine):
    """Every .data program (ours, and the bpf_conformance suite when ../shared has it) the verifier accepts
    with its mem's size runs without a fault."""
    accepted = 0
    for path in _data_files():
        df = datafile.load(path)
        try:
            prog = Program.from_insns(datafile.insns_of(df))
            verify(prog, mem_size=len(df.mem))
        except BPFError:
            continue
        accepted += 1
        try:
            VM(prog, engine).run(df.mem or None)
        except RuntimeFault as e:
            raise AssertionError(f"{path.name}: verified program faulted: {e}") from None
    assert accepted >= 20


HANDWRITTEN = [
    ("""
        mov %r0, 0
        mov %r3, 0
    loop:
        mov %r4, %r1
        add %r4, %r3
        ldxb %r5, [%r4+0]
        add %r0, %r5
        add %r3, 1
        jlt %r3, 32, loop
        exit
    """, 32),
    ("""
        ldxb %r2, [%r1+0]
        and %r2, 0x3f
        mov %r3, %r1
        add %r3, %r2
        ldxb %r0, [%r3+0]
        stxb [%r3+0], %r2
        exit
    """, 64),
    ("""
        ldxh %r2, [%r1+0]
        jgt %r2, 100, +4
        mov %r3, %r1
        add %r3, %r2
        ldxdw %r0, [%r3+0]
        exit
        mov %r0, 0
        exit
    """, 108),
]


@pytest.mark.parametrize("src,size", HANDWRITTEN)
def test_differential_handwritten(src, size, engine):
    prog = Program.from_asm(src)
    verify(prog, mem_size=size)
    vm = VM(prog, engine)
    rng = np.random.default_rng(size)
    for _ in range(20):
        vm.run(random_input(size, rng))
    with pytest.raises(VerifierError):
        verify(prog, mem_size=size - 1)


# ------------------------------------------------------------------------------------ CLI
def test_cli_verify_accepts(tmp_path, capsys):
    from bpfjit import cli
    f = tmp_path / "loop.asm"
    f.write_text(LOOP)
    assert cli.main(["verify", str(f)]) == 0
    assert capsys.readouterr().out == "verified: 12 insns processed\n"


def test_cli_verify_refuses_with_log(tmp_path, capsys):
    from bpfjit import cli
    f = tmp_path / "oob.asm"
    f.write_text("ldxb %r0, [%r1+8]\nexit\n")
    assert cli.main(["verify", str(f), "--mem-size", "8", "--log", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == "0: (71) r0 = *(u8 *)(r1 +8)\ninvalid access to memory, mem_size=8 off=8 size=1\n"
    assert err.strip() == f"bpfjit: {f}: instruction 0: invalid access to memory, mem_size=8 off=8 size=1"
    assert cli.main(["verify", str(f), "--mem-size", "9"]) == 0


def test_cli_verify_kprobe_prog_type(tmp_path, capsys):
    from bpfjit import cli
    f = tmp_path / "k.asm"
    f.write_text("stdw [%r1+0], 1\nmov %r0, 0\nexit\n")
    assert cli.main(["verify", str(f), "--prog-type", "kprobe"]) == 1
    assert "invalid bpf_context access off=0 size=8" in capsys.readouterr().err
    assert cli.main(["verify", str(f), "--prog-type", "kprobe", "--kern-version", "0"]) == 1
    assert "kprobe program needs kern_version" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ classic BPF
FILTERS = sorted((Path(__file__).parent / "data" / "packets" / "filters").glob("*.ddd"))


@pytest.mark.parametrize("path", FILTERS, ids=[p.stem for p in FILTERS])
def test_converted_tcpdump_filters_verify(path):
    """cBPF filters converted to eBPF (r6 = the context, LD_ABS / LD_IND, `ldx msh`) verify as raw programs."""
    from bpfjit import cbpf
    prog = cbpf.from_tcpdump(path.read_text())
    assert verify(prog).proven
    assert len(FILTERS) >= 15


def test_converted_filters_use_legacy_loads():
    from bpfjit import cbpf
    ops = [{f.op for f in cbpf.from_tcpdump(p.read_text()).forms if f is not None} for p in FILTERS]
    assert sum("ldabs" in o for o in ops) >= 10 and any("ldind" in o for o in ops)
