"""A minimal ELF64 little-endian relocatable-object writer for tests and benchmarks: objects clang does not
emit (RELA sections, e_machine 0, no function symbols, huge programs) built from sections, symbols and
relocations given as data. Not part of bpfjit.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bpfjit import isa

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 3, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL = 0, 1
R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_32 = 1, 2, 10


@dataclass
class Sec:
    name: str
    data: bytes = b""
    type: int = SHT_PROGBITS
    flags: int = SHF_ALLOC
    size: int | None = None          # SHT_NOBITS


@dataclass
class Sym:
    name: str
    section: str | None              # None: undefined
    value: int = 0
    size: int = 0
    type: int = STT_FUNC
    bind: int = STB_GLOBAL


@dataclass
class Rel:
    section: str                     # the patched section
    offset: int
    symbol: str
    type: int = R_BPF_64_64
    addend: int | None = None        # not None: written to a RELA section


@dataclass
class Obj:
    sections: list[Sec] = field(default_factory=list)
    symbols: list[Sym] = field(default_factory=list)
    relocs: list[Rel] = field(default_factory=list)
    machine: int = 247

    def code(self, name: str, insns, flags: int = SHF_ALLOC | SHF_EXECINSTR) -> None:
        self.sections.append(Sec(name, isa.encode(insns), SHT_PROGBITS, flags))

    def build(self) -> bytes:
        secs = [Sec("")] + list(self.sections)
        index = {s.name: i for i, s in enumerate(secs)}
        # relocation sections, one per patched section (REL or RELA by the first entry)
        by_target: dict[str, list[Rel]] = {}
        for r in self.relocs:
            by_target.setdefault(r.section, []).append(r)
        strtab = bytearray(b"\0")
        sym_index = {}
        local = [s for s in self.symbols if s.bind == STB_LOCAL]
        glob = [s for s in self.symbols if s.bind != STB_LOCAL]
        symtab = bytearray(24)
        for s in local + glob:
            name_off = len(strtab) if s.name else 0
            if s.name:
                strtab += s.name.encode() + b"\0"
            shndx = index[s.section] if s.section is not None else 0
            symtab += struct.pack("<IBBHQQ", name_off, (s.bind << 4) | s.type, 0, shndx, s.value, s.size)
            sym_index[s.name] = len(symtab) // 24 - 1
        rel_secs = []
        for target, rels in by_target.items():
            rela = rels[0].addend is not None
            body = b"".join(struct.pack("<QQq" if rela else "<QQ", r.offset, (sym_index[r.symbol] << 32) | r.type,
                                        *((r.addend or 0,) if rela else ())) for r in rels)
            rel_secs.append((Sec((".rela" if rela else ".rel") + target, body, SHT_RELA if rela else SHT_REL, 0),
                             index[target], 24 if rela else 16))
        all_secs = secs + [s for s, _, _ in rel_secs] + [Sec(".symtab", bytes(symtab), SHT_SYMTAB, 0),
                                                           Sec(".strtab", bytes(strtab), SHT_STRTAB, 0)]
        n_symtab = len(all_secs) - 2
        shstrtab = bytearray(b"\0")
        names = []
        for s in all_secs:
            names.append(len(shstrtab) if s.name else 0)
            if s.name:
                shstrtab += s.name.encode() + b"\0"
        names.append(len(shstrtab))
        shstrtab += b".shstrtab\0"
        all_secs.append(Sec(".shstrtab", bytes(shstrtab), SHT_STRTAB, 0))
        out = bytearray(64)
        offsets = []
        for s in all_secs:
            out += bytes(-len(out) % 8)
            offsets.append(len(out))
            if s.type != SHT_NOBITS:
                out += s.data
        out += bytes(-len(out) % 8)
        shoff = len(out)
        rel_info = {len(secs) + i: (t, e) for i, (_, t, e) in enumerate(rel_secs)}
        for i, s in enumerate(all_secs):
            if i == 0:
                out += bytes(64)
                continue
            size = s.size if s.type == SHT_NOBITS and s.size is not None else len(s.data)
            link = info = entsize = 0
            if i in rel_info:
                link, (info, entsize) = n_symtab, rel_info[i]
            elif s.type == SHT_SYMTAB:
                link, info, entsize = n_symtab + 1, 1 + len(local), 24
            out += struct.pack("<IIQQQQIIQQ", names[i], s.type, s.flags, 0, offsets[i], size, link, info, 8,
                               entsize)
        hdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        hdr += struct.pack("<HHIQQQIHHHHHH", 1, self.machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(all_secs),
                           len(all_secs) - 1)
        out[:64] = hdr
        return bytes(out)


def legacy_map_def(mtype: int, key: int, value: int, entries: int, flags: int = 0) -> bytes:
    return struct.pack("<5I", mtype, key, value, entries, flags)


def large_object(n_insns: int = 40_000, n_progs: int = 10, ref_every: int = 40) -> bytes:
    """n_progs kprobe programs of n_insns / n_progs slots in total, each with an lddw map reference every
    `ref_every` slots and a call to a shared .text subprogram; a legacy hash map; GPL."""
    obj = Obj()
    obj.sections.append(Sec("maps", legacy_map_def(1, 4, 8, 64), SHT_PROGBITS, SHF_ALLOC | SHF_WRITE))
    obj.symbols.append(Sym("big_map", "maps", 0, 20, STT_OBJECT))
    sub = [isa.Insn(0xB7, 0, 0, 0, 1), isa.Insn(0x95, 0, 0, 0, 0)]
    obj.code(".text", sub)
    obj.symbols.append(Sym("helper_sub", ".text", 0, 16, STT_FUNC))
    per = n_insns // n_progs
    for p in range(n_progs):
        insns, sec = [], f"kprobe/p{p}"
        while len(insns) < per - 4:
            if len(insns) % ref_every == 0:
                obj.relocs.append(Rel(sec, len(insns) * 8, "big_map"))
                insns += [isa.Insn(0x18, 1, 0, 0, 0), isa.Insn(0, 0, 0, 0, 0)]
            else:
                insns.append(isa.Insn(0x07, 0, 0, 0, 1))           # add r0, 1
        obj.relocs.append(Rel(sec, len(insns) * 8, "helper_sub", R_BPF_64_32))
        insns += [isa.Insn(0x85, 0, 1, 0, -1), isa.Insn(0xB7, 0, 0, 0, 0), isa.Insn(0x95, 0, 0, 0, 0)]
        obj.code(sec, insns)
        obj.symbols.append(Sym(f"prog{p}", sec, 0, len(insns) * 8, STT_FUNC))
    obj.sections.append(Sec("license", b"GPL\0", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE))
    return obj.build()
