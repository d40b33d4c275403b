"""The ISA table (bpfjit.isa) against RFC 9669 Appendix A, written out independently below, plus the slot codec.

The expected table is data: one line per opcode family (the K and X opcodes of ALU/JMP operations share a
line), the selector that picks the row among forms sharing an opcode, the assembler mnemonic, the
conformance group and the CPU version (v1 base, v2 the 64-bit jlt/jle/jslt/jsle, v3 JMP32 and the atomics
beyond add, v4 sdiv/smod/movsx/ldxs/bswap/gotol/callx). Nothing here derives rows from isa.py.
"""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.isa import Insn, decode, encode, form_of

# opcodes (K[,X])  selector  mnemonic  group  cpu        selector: "-" (none) or field=value
RFC9669 = """
0x04,0x0c  -        add32             base32    1
0x14,0x1c  -        sub32             base32    1
0x24,0x2c  -        mul32             divmul32  1
0x34,0x3c  off=0    div32             divmul32  1
0x34,0x3c  off=1    sdiv32            divmul32  4
0x44,0x4c  -        or32              base32    1
0x54,0x5c  -        and32             base32    1
0x64,0x6c  -        lsh32             base32    1
0x74,0x7c  -        rsh32             base32    1
0x84       -        neg32             base32    1
0x94,0x9c  off=0    mod32             divmul32  1
0x94,0x9c  off=1    smod32            divmul32  4
0xa4,0xac  -        xor32             base32    1
0xb4,0xbc  off=0    mov32             base32    1
0xbc       off=8    movsx832          base32    4
0xbc       off=16   movsx1632         base32    4
0xc4,0xcc  -        arsh32            base32    1
0xd4       imm=16   le16              base32    1
0xd4       imm=32   le32              base32    1
0xd4       imm=64   le64              base64    1
0xdc       imm=16   be16              base32    1
0xdc       imm=32   be32              base32    1
0xdc       imm=64   be64              base64    1
0x07,0x0f  -        add               base64    1
0x17,0x1f  -        sub               base64    1
0x27,0x2f  -        mul               divmul64  1
0x37,0x3f  off=0    div               divmul64  1
0x37,0x3f  off=1    sdiv              divmul64  4
0x47,0x4f  -        or                base64    1
0x57,0x5f  -        and               base64    1
0x67,0x6f  -        lsh               base64    1
0x77,0x7f  -        rsh               base64    1
0x87       -        neg               base64    1
0x97,0x9f  off=0    mod               divmul64  1
0x97,0x9f  off=1    smod              divmul64  4
0xa7,0xaf  -        xor               base64    1
0xb7,0xbf  off=0    mov               base64    1
0xbf       off=8    movsx864          base64    4
0xbf       off=16   movsx1664         base64    4
0xbf       off=32   movsx3264         base64    4
0xc7,0xcf  -        arsh              base64    1
0xd7       imm=16   bswap16           base32    4
0xd7       imm=32   bswap32           base32    4
0xd7       imm=64   bswap64           base64    4
0x05       -        ja                base32    1
0x15,0x1d  -        jeq               base64    1
0x25,0x2d  -        jgt               base64    1
0x35,0x3d  -        jge               base64    1
0x45,0x4d  -        jset              base64    1
0x55,0x5d  -        jne               base64    1
0x65,0x6d  -        jsgt              base64    1
0x75,0x7d  -        jsge              base64    1
0x85       src=0    call              base32    1
0x85       src=1    call_local        base32    1
0x85       src=2    call_btf          base32    1
0x8d       -        callx             callx     4
0x95       -        exit              base32    1
0xa5,0xad  -        jlt               base64    2
0xb5,0xbd  -        jle               base64    2
0xc5,0xcd  -        jslt              base64    2
0xd5,0xdd  -        jsle              base64    2
0x06       -        ja32              base32    4
0x16,0x1e  -        jeq32             base32    3
0x26,0x2e  -        jgt32             base32    3
0x36,0x3e  -        jge32             base32    3
0x46,0x4e  -        jset32            base32    3
0x56,0x5e  -        jne32             base32    3
0x66,0x6e  -        jsgt32            base32    3
0x76,0x7e  -        jsge32            base32    3
0xa6,0xae  -        jlt32             base32    3
0xb6,0xbe  -        jle32             base32    3
0xc6,0xce  -        jslt32            base32    3
0xd6,0xde  -        jsle32            base32    3
0x18       src=0    lddw              base64    1
0x18       src=1    lddw              base64    1
0x18       src=2    lddw              base64    1
0x18       src=3    lddw              base64    1
0x18       src=4    lddw              base64    1
0x18       src=5    lddw              base64    1
0x18       src=6    lddw              base64    1
0x20       -        ldabsw            packet    1
0x28       -        ldabsh            packet    1
0x30       -        ldabsb            packet    1
0x40       -        ldindw            packet    1
0x48       -        ldindh            packet    1
0x50       -        ldindb            packet    1
0x61       -        ldxw              base32    1
0x69       -        ldxh              base32    1
0x71       -        ldxb              base32    1
0x79       -        ldxdw             base64    1
0x81       -        ldxsw             base32    4
0x89       -        ldxsh             base32    4
0x91       -        ldxsb             base32    4
0x62       -        stw               base32    1
0x6a       -        sth               base32    1
0x72       -        stb               base32    1
0x7a       -        stdw              base64    1
0x63       -        stxw              base32    1
0x6b       -        stxh              base32    1
0x73       -        stxb              base32    1
0x7b       -        stxdw             base64    1
0xc3       imm=0x00 lock_add32        atomic32  1
0xc3       imm=0x01 lock_fetch_add32  atomic32  3
0xc3       imm=0x40 lock_or32         atomic32  3
0xc3       imm=0x41 lock_fetch_or32   atomic32  3
0xc3       imm=0x50 lock_and32        atomic32  3
0xc3       imm=0x51 lock_fetch_and32  atomic32  3
0xc3       imm=0xa0 lock_xor32        atomic32  3
0xc3       imm=0xa1 lock_fetch_xor32  atomic32  3
0xc3       imm=0xe1 lock_xchg32       atomic32  3
0xc3       imm=0xf1 lock_cmpxchg32    atomic32  3
0xdb       imm=0x00 lock_add          atomic64  1
0xdb       imm=0x01 lock_fetch_add    atomic64  3
0xdb       imm=0x40 lock_or           atomic64  3
0xdb       imm=0x41 lock_fetch_or     atomic64  3
0xdb       imm=0x50 lock_and          atomic64  3
0xdb       imm=0x51 lock_fetch_and    atomic64  3
0xdb       imm=0xa0 lock_xor          atomic64  3
0xdb       imm=0xa1 lock_fetch_xor    atomic64  3
0xdb       imm=0xe1 lock_xchg         atomic64  3
0xdb       imm=0xf1 lock_cmpxchg      atomic64  3
"""


def _rows() -> list[tuple[int, str | None, int, str, str, int]]:
    """(opcode, selector field, selector value, mnemonic, group, cpu), one per instruction form."""
    rows = []
    for line in RFC9669.strip().splitlines():
        opcodes, sel, mnem, group, cpu = line.split()
        field, value = (None, 0) if sel == "-" else (sel.split("=")[0], int(sel.split("=")[1], 0))
        for opc in opcodes.split(","):
            rows.append((int(opc, 16), field, value, mnem.replace("_", " "), group, int(cpu)))
    return rows


ROWS = _rows()
RFC_OPCODES = {r[0] for r in ROWS}


def _slot(opcode: int, field: str | None, value: int) -> Insn:
    fields = dict(dst=0, src=0, off=0, imm=0)
    if field:
        fields[field] = value
    return Insn(opcode, **fields)


def test_expected_table_has_no_duplicate_rows():
    dups = [k for k, n in Counter((r[0], r[1], r[2]) for r in ROWS).items() if n > 1]
    assert not dups
    assert len(ROWS) == 171


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0]:#04x}-{r[3].replace(' ', '_')}-{r[2]}")
def test_every_rfc_row_is_in_the_table(row):
    opcode, field, value, mnem, group, cpu = row
    f = form_of(_slot(opcode, field, value))
    assert f is not None, f"{opcode:#04x} {field}={value} missing"
    assert (f.opcode, f.mnemonic, f.group, f.cpu) == (opcode, mnem, group, cpu)


def test_table_has_exactly_the_rfc_rows():
    found = [form_of(_slot(opc, fld, val)) for opc, fld, val, *_ in ROWS]
    assert len({id(f) for f in found}) == len(ROWS) == len(isa.FORMS)
    assert {f.opcode for f in isa.FORMS} == RFC_OPCODES


def test_no_duplicate_opcode_selector_rows_in_isa():
    keys = Counter((f.opcode, f.sel_field, f.sel_value if f.sel_field else None) for f in isa.FORMS)
    assert [k for k, n in keys.items() if n > 1] == []


def test_forms_sharing_an_opcode_all_have_one_selector_field():
    for opcode, forms in isa.BY_OPCODE.items():
        if len(forms) > 1:
            assert len({f.sel_field for f in forms}) == 1 and forms[0].sel_field is not None, hex(opcode)


@pytest.mark.parametrize("opcode", [o for o in range(256) if o not in RFC_OPCODES])
def test_opcodes_outside_the_rfc_are_unknown(opcode):
    assert opcode not in isa.BY_OPCODE
    for slot in (Insn(opcode, 0, 0, 0, 0), Insn(opcode, 1, 1, 1, 1)):
        assert form_of(slot) is None


@pytest.mark.parametrize("opcode", [0x8C, 0xDF, 0x96, 0x86, 0x38, 0x00, 0x58, 0xE7, 0xFF])
def test_form_of_unknown_opcode_is_none(opcode):
    assert form_of(Insn(opcode, 0, 0, 0, 0)) is None


@pytest.mark.parametrize("slot", [
    Insn(0x34, 0, 0, 2, 1),          # div32 with offset 2
    Insn(0x97, 0, 0, -1, 1),         # mod with offset -1
    Insn(0xBF, 0, 1, 64, 0),         # movsx with 64
    Insn(0xBC, 0, 1, 32, 0),         # movsx3232 does not exist
    Insn(0xB7, 0, 0, 8, 0),          # movsx has no immediate form
    Insn(0xD4, 0, 0, 0, 8),          # le8
    Insn(0xDC, 0, 0, 0, 128),        # be128
    Insn(0xD7, 0, 0, 0, 24),         # bswap24
    Insn(0x85, 0, 3, 0, 1),          # call with src 3
    Insn(0x18, 0, 7, 0, 0),          # lddw with src 7
    Insn(0xC3, 0, 0, 0, 0x02),       # atomic imm 2
    Insn(0xDB, 0, 0, 0, 0xE0),       # xchg without FETCH
    Insn(0xDB, 0, 0, 0, 0xF0),       # cmpxchg without FETCH
], ids=repr)
def test_form_of_unknown_selector_is_none(slot):
    assert form_of(slot) is None


# ---- every mnemonic assembles to its own form ----
OPERANDS = {   # Form.shape -> operands written after the mnemonic
    "": "", "r": "%r1", "ri": "%r1, 5", "rr": "%r1, %r2", "o": "+0", "j": "+0", "rio": "%r1, 5, +0",
    "rro": "%r1, %r2, +0", "call": "5", "calllocal": "+0", "callx": "%r3", "rm": "%r1, [%r2+4]",
    "mi": "[%r1-4], 7", "mr": "[%r1+8], %r2", "i": "4", "ri_ind": "%r2, 4", "lddw": "%r1, 0x1122334455",
    "lddw_map_fd": "%r1, map_fd(3)", "lddw_map_value": "%r1, map_value_fd(3, 4)",
    "lddw_var_addr": "%r1, var_addr(2)", "lddw_code_addr": "%r1, code_addr(+0)",
    "lddw_map_idx": "%r1, map_idx(0)", "lddw_map_idx_value": "%r1, map_value_idx(0, 4)",
}


@pytest.mark.parametrize("form", isa.FORMS, ids=lambda f: f"{f.opcode:#04x}-{f.mnemonic.replace(' ', '_')}")
def test_mnemonic_assembles_to_its_form(form):
    text = f"{form.mnemonic} {OPERANDS[form.shape]}".strip()
    insns = assemble_insns(text)
    assert len(insns) == (2 if form.opcode == isa.LDDW_OPCODE else 1)
    assert form_of(insns[0]) is form, text


# ---- slot codec ----
slots = st.builds(Insn, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                  st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1))


@given(st.lists(slots, max_size=8))
def test_decode_encode_round_trip(insns):
    data = encode(insns)
    assert len(data) == 8 * len(insns)
    assert decode(data) == insns


@given(st.lists(st.binary(min_size=8, max_size=8), max_size=8).map(b"".join))
def test_encode_decode_bytes_round_trip(data):
    assert encode(decode(data)) == data


def test_encode_layout():
    # opcode, regs (src << 4 | dst), off (s16 little-endian), imm (s32 little-endian)
    assert encode([Insn(0x07, 1, 2, -2, 0x11223344)]) == bytes([0x07, 0x21, 0xFE, 0xFF, 0x44, 0x33, 0x22, 0x11])
    assert decode(bytes([0xB7, 0xA3, 0x00, 0x80, 0xFF, 0xFF, 0xFF, 0xFF])) == [Insn(0xB7, 3, 10, -32768, -1)]
