"""The ELF layer of the object loader: an `ElfImage` of one relocatable BPF object.

pyelftools parses the ELF and section headers; the bulk tables (symbols, REL/RELA entries) are read here
with numpy record dtypes, so an object of any size costs a few array views. Every structural problem
(truncation, wrong class/endianness/machine, a section outside the file, a bad table) is an `ELFError`
naming the section and offset; no other exception leaves this module. BPF semantics (programs, maps,
relocation kinds) do not live here.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..errors import ELFError

EM_BPF = 247
EM_NONE = 0          # some old toolchains wrote e_machine 0
ET_REL = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 3, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2

SYM_DTYPE = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                      ("value", "<u8"), ("size", "<u8")])
REL_DTYPE = np.dtype([("offset", "<u8"), ("info", "<u8")])
RELA_DTYPE = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])


@dataclass
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes          # b"" for SHT_NOBITS (.bss): its size is `size`

    @property
    def executable(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


@dataclass
class Relocations:
    """One REL/RELA section: parallel arrays, `offset` inside the target section."""
    section: Section     # the REL/RELA section itself
    target: int          # index of the section the entries patch
    offset: np.ndarray
    sym: np.ndarray
    type: np.ndarray
    addend: np.ndarray | None     # None for REL (the addend is in the patched field)


def _pyelftools_errors() -> tuple:
    from elftools.common.exceptions import ELFError as PyElfError
    return (PyElfError, ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError,
            OverflowError, __import__("struct").error)


class ElfImage:
    """Sections, symbols and relocation tables of one ELF64 little-endian relocatable BPF object."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self._check_ident()
        try:
            self._parse_headers()
        except ELFError:
            raise
        except _pyelftools_errors() as e:
            raise ELFError(f"malformed ELF headers: {e}") from None
        self._parse_symbols()
        self._parse_relocations()

    # ---- headers ----
    def _check_ident(self) -> None:
        d = self.data
        if len(d) < 64:
            raise ELFError(f"truncated ELF header: {len(d)} bytes, need 64", None, 0)
        if d[:4] != b"\x7fELF":
            raise ELFError("not an ELF file (bad magic)", None, 0)
        if d[4] != 2:
            raise ELFError(f"ELF class {d[4]} is not ELF64 (BPF objects are 64-bit)", None, 4)
        if d[5] != 1:
            raise ELFError("big-endian BPF objects are not supported (EI_DATA is not little-endian)", None, 5)

    def _parse_headers(self) -> None:
        from elftools.elf.elffile import ELFFile
        f = ELFFile(io.BytesIO(self.data))
        h = f.header
        machine = f["e_machine"]
        machine = {"EM_BPF": EM_BPF, "EM_NONE": EM_NONE}.get(machine, machine)
        if machine not in (EM_BPF, EM_NONE):
            raise ELFError(f"e_machine is {machine}, not EM_BPF (247)", None, 0x12)
        etype = h["e_type"]
        if etype not in ("ET_REL", ET_REL):
            raise ELFError(f"ELF type {etype} is not a relocatable object (ET_REL)", None, 0x10)
        self.machine = machine
        n, shoff, shentsize = h["e_shnum"], h["e_shoff"], h["e_shentsize"]
        if n == 0:
            raise ELFError("the object has no section headers", None, 0x3C)
        if shentsize != 64:
            raise ELFError(f"section header size {shentsize}, expected 64", None, 0x3A)
        if shoff + n * 64 > len(self.data):
            raise ELFError(f"section header table ({n} entries at {shoff:#x}) runs past the end of the file "
                           f"({len(self.data)} bytes)", None, shoff)
        shstrndx = h["e_shstrndx"]
        if not 0 <= shstrndx < n:
            raise ELFError(f"section name table index {shstrndx} is out of range (0..{n - 1})", None, 0x3E)
        raw = [f._get_section_header(i) for i in range(n)]
        names = self._bounded(raw[shstrndx], f"#{shstrndx}")
        self.sections: list[Section] = []
        for i, sh in enumerate(raw):
            name = _cstr(names, sh["sh_name"], f"section header #{i} name")
            stype = _enum(sh["sh_type"], _SHT)
            data = b"" if stype == SHT_NOBITS else self._bounded(sh, name or f"#{i}")
            self.sections.append(Section(i, name, stype, sh["sh_flags"], sh["sh_offset"], sh["sh_size"],
                                         sh["sh_link"], sh["sh_info"], sh["sh_entsize"], data))

    def _bounded(self, sh, name: str) -> bytes:
        off, size = sh["sh_offset"], sh["sh_size"]
        if _enum(sh["sh_type"], _SHT) == SHT_NOBITS:
            return b""
        if off > len(self.data) or size > len(self.data) - off:
            raise ELFError(f"section data ({size} bytes at file offset {off:#x}) runs past the end of the file "
                           f"({len(self.data)} bytes)", name, 0)
        return self.data[off:off + size]

    # ---- symbols ----
    def _parse_symbols(self) -> None:
        tabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tabs:
            raise ELFError("the object has no symbol table (.symtab)")
        st = tabs[0]
        if st.size % SYM_DTYPE.itemsize:
            raise ELFError(f"symbol table size {st.size} is not a multiple of {SYM_DTYPE.itemsize}", st.name, 0)
        if not 0 < st.link < len(self.sections):
            raise ELFError(f"symbol table links to string table #{st.link}, which does not exist", st.name, 0)
        self.symtab = st
        self._sym_cache: dict[int, tuple] = {}
        self.symbols = np.frombuffer(st.data, dtype=SYM_DTYPE)
        self._strtab = self.sections[st.link].data
        bad = np.nonzero(self.symbols["name"] >= max(len(self._strtab), 1))[0]
        if len(bad) and not (len(self._strtab) == 0 and (self.symbols["name"] == 0).all()):
            i = int(bad[0])
            raise ELFError(f"symbol #{i} name offset {int(self.symbols['name'][i])} is outside the string table",
                           st.name, i * SYM_DTYPE.itemsize)

    def sym_name(self, i: int) -> str:
        s = self.symbols[i]
        if (s["info"] & 0xF) == STT_SECTION and s["name"] == 0:
            idx = int(s["shndx"])
            return self.sections[idx].name if idx < len(self.sections) else ""
        return _cstr(self._strtab, int(s["name"]), f"symbol #{i} name")

    def sym(self, i: int) -> tuple[str, int, int, int, int, int]:
        """(name, type, bind, shndx, value, size) of symbol i."""
        hit = self._sym_cache.get(i)
        if hit is None:
            s = self.symbols[i]
            info = int(s["info"])
            hit = self._sym_cache[i] = (self.sym_name(i), info & 0xF, info >> 4, int(s["shndx"]), int(s["value"]),
                                        int(s["size"]))
        return hit

    # ---- relocations ----
    def _parse_relocations(self) -> None:
        self.relocations: dict[int, Relocations] = {}
        nsyms = len(self.symbols)
        for s in self.sections:
            if s.type not in (SHT_REL, SHT_RELA):
                continue
            dt = REL_DTYPE if s.type == SHT_REL else RELA_DTYPE
            if s.size % dt.itemsize:
                raise ELFError(f"relocation table size {s.size} is not a multiple of {dt.itemsize}", s.name, 0)
            if not 0 < s.info < len(self.sections):
                raise ELFError(f"relocation section targets section #{s.info}, which does not exist", s.name, 0)
            rows = np.frombuffer(s.data, dtype=dt)
            sym = (rows["info"] >> np.uint64(32)).astype(np.int64)
            bad = np.nonzero(sym >= nsyms)[0]
            if len(bad):
                i = int(bad[0])
                raise ELFError(f"relocation #{i} refers to symbol #{int(sym[i])}, the symbol table has {nsyms}",
                               s.name, i * dt.itemsize)
            self.relocations[s.info] = Relocations(
                s, s.info, rows["offset"].astype(np.int64), sym,
                (rows["info"] & np.uint64(0xFFFFFFFF)).astype(np.int64),
                rows["addend"] if s.type == SHT_RELA else None)

    def section_by_name(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None


_SHT = {"SHT_NULL": 0, "SHT_PROGBITS": SHT_PROGBITS, "SHT_SYMTAB": SHT_SYMTAB, "SHT_STRTAB": SHT_STRTAB,
        "SHT_RELA": SHT_RELA, "SHT_NOBITS": SHT_NOBITS, "SHT_REL": SHT_REL}


def _enum(value, table: dict) -> int:
    """pyelftools gives known enum values as names; turn them back into numbers."""
    if isinstance(value, int):
        return value
    return table.get(value, -1)


def _cstr(table: bytes, off: int, what: str) -> str:
    if off == 0 and not table:
        return ""
    if off >= len(table):
        raise ELFError(f"{what}: string offset {off} is outside the string table ({len(table)} bytes)")
    end = table.find(b"\0", off)
    if end < 0:
        raise ELFError(f"{what}: string at offset {off} is not NUL-terminated")
    return table[off:end].decode("utf-8", "replace")
