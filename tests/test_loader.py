"""Load-time validation (`Program.validate`): every LoadError rule, with the exact pc and field it names.

Programs are written as raw slots (opcode, dst, src, off, imm) so that encodings the assembler refuses can be
tested too. Running programs is tested in test_semantics.py.
"""
from __future__ import annotations

import pytest

from bpfjit import VM, Config, LoadError, Program
from bpfjit.isa import ALL_GROUPS, MAX_INSNS, Insn, encode

EXIT = (0x95, 0, 0, 0, 0)
MOV0 = (0xB4, 0, 0, 0, 0)          # mov32 %r0, 0 (base32, v1: loads under every config)
LDDW = (0x18, 0, 0, 0, 1)          # first slot of lddw %r0, ...
LDDW2 = (0x00, 0, 0, 0, 0)         # its second slot


def load(*slots, config: Config = Config()) -> Program:
    return Program.from_insns(slots, config)


def load_error(*slots, config: Config = Config()) -> LoadError:
    with pytest.raises(LoadError) as ei:
        load(*slots, config=config)
    return ei.value


def assert_error(err: LoadError, pc: int | None, field: str | None) -> None:
    assert (err.pc, err.field) == (pc, field), str(err)
    if pc is not None:
        assert str(err).startswith(f"instruction {pc}: ")


# ---------------------------------------------------------------------------------------- opcodes
@pytest.mark.parametrize("opcode", [0x00, 0x8C, 0xDF, 0x96, 0x86, 0x38, 0x58, 0xFF, 0x0E, 0xE5])
def test_unknown_opcode(opcode):
    assert_error(load_error(MOV0, (opcode, 0, 0, 0, 0), EXIT), 1, "opcode")


@pytest.mark.parametrize("slot, field", [
    ((0x34, 0, 0, 2, 1), "off"),        # div32 with offset 2
    ((0x3F, 0, 1, -1, 0), "off"),       # div with offset -1
    ((0x9F, 0, 1, 4, 0), "off"),        # mod with offset 4
    ((0xBF, 0, 1, 64, 0), "off"),       # movsx 64
    ((0xBC, 0, 1, 32, 0), "off"),       # movsx3232
    ((0xB7, 0, 0, 8, 0), "off"),        # movsx with an immediate
    ((0xC3, 0, 1, 0, 0x02), "imm"),     # atomic op 2
    ((0xDB, 0, 1, 0, 0xE0), "imm"),     # xchg without FETCH
    ((0xDB, 0, 1, 0, 0xF0), "imm"),     # cmpxchg without FETCH
    ((0x85, 0, 3, 0, 1), "src"),        # call with src 3
], ids=repr)
def test_unknown_selector(slot, field):
    assert_error(load_error(MOV0, slot, EXIT), 1, field)


def test_lddw_unknown_source():
    assert_error(load_error(MOV0, (0x18, 0, 7, 0, 1), LDDW2, EXIT), 1, "src")


@pytest.mark.parametrize("opcode", [0xD4, 0xDC, 0xD7])
@pytest.mark.parametrize("width", [0, 8, 24, 128])
def test_end_with_invalid_width(opcode, width):
    assert_error(load_error(MOV0, (opcode, 0, 0, 0, width), EXIT), 1, "imm")


# ------------------------------------------------------------------------------- reserved fields
@pytest.mark.parametrize("slot, field", [
    ((0x07, 0, 1, 0, 1), "src"),        # add K: src reserved
    ((0x07, 0, 0, 1, 1), "off"),        # add K: off reserved
    ((0x0F, 0, 1, 0, 1), "imm"),        # add X: imm reserved
    ((0x84, 0, 0, 0, 1), "imm"),        # neg32: imm reserved
    ((0x87, 0, 2, 0, 0), "src"),        # neg: src reserved
    ((0xD4, 0, 1, 0, 16), "src"),       # le16: src reserved
    ((0xD7, 0, 0, 1, 32), "off"),       # bswap32: off reserved
    ((0x15, 0, 1, 0, 0), "src"),        # jeq K: src reserved
    ((0x1D, 0, 1, 0, 5), "imm"),        # jeq X: imm reserved
    ((0x05, 1, 0, 0, 0), "dst"),        # ja: dst reserved
    ((0x05, 0, 1, 0, 0), "src"),        # ja: src reserved
    ((0x05, 0, 0, 0, 1), "imm"),        # ja: imm reserved
    ((0x06, 0, 0, 1, 0), "off"),        # ja32: off reserved
    ((0x85, 1, 0, 0, 5), "dst"),        # call: dst reserved
    ((0x85, 0, 0, 1, 5), "off"),        # call: off reserved
    ((0x8D, 1, 0, 0, 1), "imm"),        # callx: imm reserved
    ((0x8D, 1, 1, 0, 0), "src"),        # callx: src reserved
    ((0x8D, 1, 0, 1, 0), "off"),        # callx: off reserved
    ((0x61, 0, 1, 0, 1), "imm"),        # ldxw: imm reserved
    ((0x62, 1, 2, 0, 1), "src"),        # stw: src reserved
    ((0x63, 1, 2, 0, 1), "imm"),        # stxw: imm reserved
    ((0x30, 1, 0, 0, 1), "dst"),        # ldabsb: dst reserved
    ((0x30, 0, 1, 0, 1), "src"),        # ldabsb: src reserved
    ((0x30, 0, 0, 1, 1), "off"),        # ldabsb: off reserved
    ((0x50, 1, 2, 0, 1), "dst"),        # ldindb: dst reserved
    ((0x50, 0, 2, 1, 1), "off"),        # ldindb: off reserved
], ids=repr)
def test_reserved_field_nonzero(slot, field):
    assert_error(load_error(MOV0, slot, EXIT), 1, field)


def test_exit_with_reserved_fields():
    for slot, field in (((0x95, 1, 0, 0, 0), "dst"), ((0x95, 0, 0, 0, 1), "imm"), ((0x95, 0, 0, 1, 0), "off")):
        assert_error(load_error(MOV0, slot), 1, field)


def test_lddw_with_offset():
    assert_error(load_error(MOV0, (0x18, 0, 0, 1, 1), LDDW2, EXIT), 1, "off")


# ------------------------------------------------------------------------------------- registers
@pytest.mark.parametrize("slot, field", [
    ((0x0F, 11, 1, 0, 0), "dst"),       # add X
    ((0x0F, 1, 11, 0, 0), "src"),
    ((0xB7, 15, 0, 0, 0), "dst"),       # mov K
    ((0x1D, 12, 1, 0, 0), "dst"),       # jeq X
    ((0x1D, 1, 13, 0, 0), "src"),
    ((0x61, 0, 15, 0, 0), "src"),       # ldxw
    ((0x7B, 11, 1, 0, 0), "dst"),       # stxdw
    ((0xDB, 1, 14, 0, 0x01), "src"),    # lock fetch add
    ((0x8D, 11, 0, 0, 0), "dst"),       # callx
    ((0x50, 0, 11, 0, 0), "src"),       # ldindb
], ids=repr)
def test_register_out_of_range(slot, field):
    assert_error(load_error(MOV0, slot, EXIT), 1, field)


@pytest.mark.parametrize("slot, field", [
    ((0xB7, 10, 0, 0, 1), "dst"),       # mov %r10, 1
    ((0x07, 10, 0, 0, 8), "dst"),       # add %r10, 8
    ((0x04, 10, 0, 0, 8), "dst"),       # add32 %r10, 8
    ((0xBF, 10, 1, 0, 0), "dst"),       # mov %r10, %r1
    ((0xBF, 10, 1, 8, 0), "dst"),       # movsx864 %r10, %r1
    ((0x87, 10, 0, 0, 0), "dst"),       # neg %r10
    ((0xDC, 10, 0, 0, 16), "dst"),      # be16 %r10
    ((0x79, 10, 1, 0, 0), "dst"),       # ldxdw %r10, [%r1]
    ((0x91, 10, 1, 0, 0), "dst"),       # ldxsb %r10, [%r1]
    ((0xDB, 1, 10, 0, 0x01), "src"),    # lock fetch add [%r1], %r10
    ((0xC3, 1, 10, 0, 0xA1), "src"),    # lock fetch xor32 [%r1], %r10
    ((0xDB, 1, 10, 0, 0xE1), "src"),    # lock xchg [%r1], %r10
], ids=repr)
def test_write_to_r10(slot, field):
    assert_error(load_error(MOV0, slot, EXIT), 1, field)


def test_lddw_into_r10():
    assert_error(load_error(MOV0, (0x18, 10, 0, 0, 1), LDDW2, EXIT), 1, "dst")


@pytest.mark.parametrize("slot", [
    (0x7B, 10, 1, -8, 0),               # stxdw [%r10-8], %r1: r10 is only read
    (0x62, 10, 0, -4, 1),               # stw [%r10-4], 1
    (0xBF, 1, 10, 0, 0),                # mov %r1, %r10
    (0xDB, 10, 1, -8, 0x00),            # lock add [%r10-8], %r1
    (0xDB, 1, 10, 0, 0x00),             # lock add [%r1], %r10 (no fetch: src only read)
    (0xDB, 1, 10, 0, 0xF1),             # lock cmpxchg [%r1], %r10 (writes r0, not src)
    (0x1D, 10, 10, 0, 0),               # jeq %r10, %r10, +0
], ids=repr)
def test_reading_r10_is_fine(slot):
    load(MOV0, slot, EXIT)


# --------------------------------------------------------------------------------- jump targets
@pytest.mark.parametrize("slot, field", [
    ((0x05, 0, 0, 1, 0), "off"),        # ja to 3 (one past the end)
    ((0x05, 0, 0, -3, 0), "off"),       # ja to -1
    ((0x15, 1, 0, 5, 0), "off"),        # jeq to 7
    ((0x1E, 1, 2, -3, 0), "off"),       # jeq32 X to -1
    ((0x06, 0, 0, 0, 1), "imm"),        # ja32 to 3
    ((0x06, 0, 0, 0, -3), "imm"),       # ja32 to -1
    ((0x85, 0, 1, 0, 1), "imm"),        # call local to 3
    ((0x85, 0, 1, 0, -100), "imm"),     # call local to -98
], ids=repr)
def test_target_out_of_range(slot, field):
    # the slot sits at pc 1 of a 3-slot program: valid targets are 0..2
    assert_error(load_error(MOV0, slot, EXIT), 1, field)


@pytest.mark.parametrize("slot", [(0x05, 0, 0, 0, 0), (0x05, 0, 0, -2, 0), (0x06, 0, 0, 0, -2),
                                  (0x06, 0, 0, 0, 0), (0x85, 0, 1, 0, 0), (0x85, 0, 1, 0, -2),
                                  (0x15, 0, 0, -2, 0), (0x1D, 0, 1, 0, 0)], ids=repr)
def test_targets_at_both_ends_are_fine(slot):
    # at pc 1 of a 3-slot program: targets 0 and 2 are the first and last slots
    load(MOV0, slot, EXIT)


@pytest.mark.parametrize("slot, field", [
    ((0x05, 0, 0, 1, 0), "off"),        # ja +1 from pc 0 lands on pc 2, the second half of the lddw at 1
    ((0x55, 0, 0, 1, 0), "off"),        # jne
    ((0x06, 0, 0, 0, 1), "imm"),        # ja32
    ((0x85, 0, 1, 0, 1), "imm"),        # call local
], ids=repr)
def test_target_inside_lddw(slot, field):
    assert_error(load_error(slot, LDDW, LDDW2, EXIT), 0, field)


def test_backward_jump_into_lddw():
    assert_error(load_error(LDDW, LDDW2, (0x05, 0, 0, -2, 0), EXIT), 2, "off")


# ------------------------------------------------------------------------------------------ lddw
def test_truncated_lddw():
    assert_error(load_error(MOV0, EXIT, LDDW), 2, None)


@pytest.mark.parametrize("second, field", [
    ((0x95, 0, 0, 0, 0), "opcode"), ((0x00, 1, 0, 0, 0), "dst"), ((0x00, 0, 1, 0, 0), "src"),
    ((0x00, 0, 0, 1, 0), "off"),
], ids=repr)
def test_bad_second_slot_of_lddw(second, field):
    assert_error(load_error(MOV0, LDDW, second, EXIT), 2, field)


def test_second_slot_imm_is_the_high_word():
    prog = load(LDDW, (0x00, 0, 0, 0, -1), EXIT)
    assert prog.forms[1] is None


# --------------------------------------------------------------------------------- program shape
def test_empty_program():
    assert_error(load_error(), None, None)


@pytest.mark.parametrize("slots, pc", [
    ((MOV0,), 0),
    ((EXIT, MOV0), 1),
    ((MOV0, (0x15, 0, 0, -2, 0)), 1),           # conditional jump last
    ((MOV0, (0x85, 0, 1, 0, -2)), 1),           # local call last
    ((MOV0, (0x85, 0, 0, 0, 5)), 1),            # helper call last
    ((EXIT, LDDW, LDDW2), 2),                   # a complete lddw last
], ids=["mov", "exit-then-mov", "jeq", "call-local", "call", "lddw"])
def test_last_instruction_must_be_exit_or_ja(slots, pc):
    assert_error(load_error(*slots), pc, None)


@pytest.mark.parametrize("last", [(0x05, 0, 0, -2, 0), (0x06, 0, 0, 0, -2)], ids=["ja", "ja32"])
def test_program_may_end_with_ja(last):
    load(MOV0, EXIT, last)


def test_more_than_a_million_instructions():
    data = encode([Insn(*EXIT)]) * (MAX_INSNS + 1)
    assert_error(pytest.raises(LoadError, Program.from_bytes, data).value, None, None)


def test_exactly_a_million_instructions_load():
    prog = Program([Insn(*EXIT)] * MAX_INSNS)
    prog.validate()
    assert len(prog) == MAX_INSNS


@pytest.mark.parametrize("size", [1, 7, 9, 15, 20])
def test_from_bytes_length_not_multiple_of_8(size):
    with pytest.raises(LoadError) as ei:
        Program.from_bytes(bytes(size))
    assert ei.value.pc is None


# ----------------------------------------------------------------------------------------- gating
@pytest.mark.parametrize("slot, cpu", [
    ((0x37, 0, 0, 1, 3), 3),            # sdiv: v4
    ((0x9C, 0, 1, 1, 0), 3),            # smod32: v4
    ((0xBF, 0, 1, 16, 0), 3),           # movsx1664: v4
    ((0x81, 0, 1, 0, 0), 3),            # ldxsw: v4
    ((0xD7, 0, 0, 0, 16), 3),           # bswap16: v4
    ((0x06, 0, 0, 0, 0), 3),            # ja32: v4
    ((0x8D, 1, 0, 0, 0), 3),            # callx: v4
    ((0xDB, 1, 2, 0, 0x01), 2),         # lock fetch add: v3
    ((0xC3, 1, 2, 0, 0x40), 2),         # lock or32: v3
    ((0x16, 0, 0, 0, 0), 2),            # jeq32: v3
    ((0xAE, 0, 1, 0, 0), 2),            # jlt32 X: v3
    ((0xA5, 0, 0, 0, 0), 1),            # jlt: v2
    ((0xDD, 0, 1, 0, 0), 1),            # jsle X: v2
], ids=repr)
def test_cpu_version_gating(slot, cpu):
    assert_error(load_error(MOV0, slot, EXIT, config=Config(cpu=cpu)), 1, "opcode")
    load(MOV0, slot, EXIT, config=Config(cpu=cpu + 1))


@pytest.mark.parametrize("slot", [(0xDB, 1, 2, 0, 0x00), (0x15, 0, 0, 0, 0), (0x18, 0, 0, 0, 1)], ids=repr)
def test_v1_instructions_load_at_cpu_1(slot):
    slots = (MOV0, slot, LDDW2, EXIT) if slot[0] == 0x18 else (MOV0, slot, EXIT)
    load(*slots, config=Config(cpu=1))


@pytest.mark.parametrize("group, slot, other", [
    ("divmul64", (0x37, 0, 0, 0, 3), (0x34, 0, 0, 0, 3)),        # div vs div32
    ("divmul32", (0x24, 0, 0, 0, 3), (0x27, 0, 0, 0, 3)),        # mul32 vs mul
    ("atomic32", (0xC3, 1, 2, 0, 0x00), (0xDB, 1, 2, 0, 0x00)),  # lock add32 vs lock add
    ("atomic64", (0xDB, 1, 2, 0, 0x01), (0xC3, 1, 2, 0, 0x01)),
    ("packet", (0x30, 0, 0, 0, 1), (0x71, 0, 1, 0, 0)),          # ldabsb vs ldxb
    ("callx", (0x8D, 1, 0, 0, 0), (0x85, 0, 0, 0, 5)),           # callx vs call 5
    ("base64", (0x07, 0, 0, 0, 1), (0x04, 0, 0, 0, 1)),          # add vs add32
], ids=lambda v: v if isinstance(v, str) else None)
def test_group_gating(group, slot, other):
    config = Config(groups=ALL_GROUPS - {group})
    assert_error(load_error(MOV0, slot, EXIT, config=config), 1, "opcode")
    load(MOV0, other, EXIT, config=config)


def test_vm_validates_with_its_config(engine):
    prog = Program.from_insns([(0x37, 0, 0, 1, 3), EXIT])            # sdiv loads at the default v4
    with pytest.raises(LoadError) as ei:
        VM(prog, engine, Config(cpu=3))
    assert_error(ei.value, 0, "opcode")
