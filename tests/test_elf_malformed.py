"""Malformed ELF objects: real fixtures with bytes changed (truncated, wrong machine/class/endianness, bad
relocation offsets, relocations to missing symbols, oversized sections, broken BTF) raise ELFError naming
the section and offset; a hypothesis fuzz of truncations and bit flips only ever raises BPFError
subclasses, from open() and from load()."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfjit import BPFError, ELFError, LoadError, ObjectFile
from bpfjit.elf.reader import ElfImage
from bpfjit.runtime import Runtime

FIX = Path(__file__).resolve().parent / "elf"
FIXTURES = sorted(p.name for p in FIX.glob("*.o"))


def fixture(name: str) -> bytearray:
    return bytearray((FIX / name).read_bytes())


def shdr_offset(data: bytes, name: str) -> int:
    """File offset of the section header of `name`."""
    img = ElfImage(bytes(data))
    idx = next(s.index for s in img.sections if s.name == name)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return shoff + idx * 64


def section_file_offset(data: bytes, name: str) -> int:
    return struct.unpack_from("<Q", data, shdr_offset(data, name) + 0x18)[0]


def test_fixtures_exist():
    assert len(FIXTURES) >= 10


@pytest.mark.parametrize("n", [0, 3, 16, 63])
def test_truncated_header(n):
    with pytest.raises(ELFError, match="truncated ELF header"):
        ObjectFile.open(fixture("calls.o")[:n])


def test_truncated_section_table_and_data():
    data = fixture("calls.o")
    with pytest.raises(ELFError, match="section header table"):
        ObjectFile.open(data[:-10])
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    with pytest.raises(ELFError, match="runs past the end"):
        ObjectFile.open(data[:shoff])


def test_wrong_machine_class_and_endianness():
    data = fixture("kprobe_btf.o")
    struct.pack_into("<H", data, 0x12, 62)            # EM_X86_64
    with pytest.raises(ELFError, match="e_machine") as e:
        ObjectFile.open(data)
    assert e.value.offset == 0x12
    for off, val, msg in ((4, 1, "ELF64"), (5, 2, "big-endian"), (0, 0x7E, "bad magic")):
        bad = fixture("kprobe_btf.o")
        bad[off] = val
        with pytest.raises(ELFError, match=msg):
            ObjectFile.open(bad)
    bad = fixture("kprobe_btf.o")
    struct.pack_into("<H", bad, 0x10, 2)               # ET_EXEC
    with pytest.raises(ELFError, match="relocatable"):
        ObjectFile.open(bad)


def test_em_none_is_accepted():
    data = fixture("kprobe_btf.o")
    struct.pack_into("<H", data, 0x12, 0)
    assert list(ObjectFile.open(data).programs) == ["handle_open", "handle_ret"]


@pytest.mark.parametrize("new_offset,match", [(0x3, "not an instruction"), (0x10000, "not an instruction"),
                                              (0x0, "neither lddw nor call")])
def test_bad_relocation_offset(new_offset, match):
    data = fixture("kprobe_btf.o")
    rel = section_file_offset(data, ".relkprobe/do_sys_open")
    struct.pack_into("<Q", data, rel, new_offset)
    with pytest.raises(ELFError, match=match) as e:
        ObjectFile.open(data)
    assert e.value.section == ".relkprobe/do_sys_open" and e.value.offset == 0


def test_relocation_to_missing_symbol():
    data = fixture("kprobe_btf.o")
    rel = section_file_offset(data, ".relkprobe/do_sys_open")
    info = struct.unpack_from("<Q", data, rel + 8)[0]
    struct.pack_into("<Q", data, rel + 8, (9999 << 32) | (info & 0xFFFFFFFF))
    with pytest.raises(ELFError, match="symbol #9999") as e:
        ObjectFile.open(data)
    assert e.value.section == ".relkprobe/do_sys_open"


def test_relocation_to_symbol_in_missing_section():
    data = fixture("globals.o")
    img = ElfImage(bytes(data))
    i = next(i for i in range(len(img.symbols)) if img.sym_name(i) == "total")
    struct.pack_into("<H", data, img.symtab.offset + i * 24 + 6, 500)
    with pytest.raises(ELFError, match="section #500"):
        ObjectFile.open(data)


@pytest.mark.parametrize("section", ["kprobe/do_sys_open", ".BTF", ".symtab", "license"])
def test_oversized_section(section):
    data = fixture("kprobe_btf.o")
    struct.pack_into("<Q", data, shdr_offset(data, section) + 0x20, 1 << 40)
    with pytest.raises(ELFError, match="runs past the end of the file") as e:
        ObjectFile.open(data)
    assert e.value.section == section


def test_oversized_bss_is_refused():
    data = fixture("globals.o")
    struct.pack_into("<Q", data, shdr_offset(data, ".bss") + 0x20, 1 << 40)
    with pytest.raises(ELFError, match="too large") as e:
        ObjectFile.open(data)
    assert e.value.section == ".bss"


def test_broken_btf():
    data = fixture("kprobe_btf.o")
    struct.pack_into("<H", data, section_file_offset(data, ".BTF"), 0x1234)
    with pytest.raises(ELFError, match="BTF magic") as e:
        ObjectFile.open(data)
    assert e.value.section == ".BTF"


def test_huge_map_refused_at_load():
    data = fixture("kprobe_btf.o")
    obj = ObjectFile.open(data)
    obj.maps["counts"].max_entries = 1 << 31
    with pytest.raises(LoadError, match="'counts'"):
        obj.load()


def _exercise(data: bytes) -> None:
    """open + load of every program alone; only BPFError may escape (and is swallowed here)."""
    try:
        obj = ObjectFile.open(data)
    except BPFError:
        return
    for name in list(obj.programs)[:4]:
        try:
            obj.load(runtime=Runtime(kern_version=obj.kern_version or 0), programs=[name])
        except BPFError:
            pass


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
_CORPUS = {name: (FIX / name).read_bytes() for name in FIXTURES}


@FUZZ
@given(st.sampled_from(FIXTURES), st.data())
def test_fuzz_truncation_only_raises_bpf_errors(name, data):
    raw = _CORPUS[name]
    n = data.draw(st.integers(0, len(raw) - 1))
    _exercise(raw[:n])


@FUZZ
@given(st.sampled_from(FIXTURES), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                                           min_size=1, max_size=8))
def test_fuzz_bit_flips_only_raise_bpf_errors(name, flips):
    raw = bytearray(_CORPUS[name])
    for where, bit in flips:
        raw[int(where * len(raw))] ^= 1 << bit
    _exercise(bytes(raw))


@FUZZ
@given(st.sampled_from(FIXTURES), st.data())
def test_fuzz_flips_in_headers_and_tables(name, data):
    """Bit flips aimed at what the loader interprets: ELF header, section headers, symbols, relocations,
    BTF, maps."""
    raw = bytearray(_CORPUS[name])
    img = ElfImage(bytes(raw))
    shoff = struct.unpack_from("<Q", raw, 0x28)[0]
    regions = [(0, 64), (shoff, len(img.sections) * 64)] + \
        [(s.offset, s.size) for s in img.sections if s.size and s.type != 8 and not s.name.startswith(".debug")]
    for _ in range(data.draw(st.integers(1, 4))):
        start, size = data.draw(st.sampled_from(regions))
        pos = start + data.draw(st.integers(0, max(0, size - 1)))
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    _exercise(bytes(raw))
