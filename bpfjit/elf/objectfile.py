"""`ObjectFile`: a clang-built BPF ELF object (libbpf conventions and older ones) as program and map specs,
and `load()`, which turns them into live maps in a `Runtime` and ready `Program`s.

    obj = ObjectFile.open("prog.bpf.o")        # or raw bytes; parses only
    obj.programs["handle_exec"]                # ProgramSpec (also by section name)
    obj.maps["counts"]                         # MapSpec
    loaded = obj.load(runtime=None, config=None, programs=None)
    loaded.programs["handle_exec"], loaded.maps["counts"], loaded.runtime

Opening reads the ELF (reader.py), BTF (btf.py), map definitions (maps.py), classifies every relocation
and links each program with its subprograms (relocate.py). Loading creates the maps the selected programs
use, patches lddw map/data references with fds, builds and validates each Program, checks program types,
helpers, license and kern_version, and fills prog_array `values`. Instruction semantics live elsewhere.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

from .. import isa
from ..errors import BPFError, ELFError, LoadError
from . import btf as B
from .maps import (DATA_PREFIXES, MAP_IN_MAP, MAX_MAP_BYTES, MapSpec, btf_map_def, create_map, data_map_spec,
                   legacy_def_size, legacy_map_def)
from .reader import (SHN_LORESERVE, SHN_UNDEF, SHT_NOBITS, SHT_PROGBITS, STB_LOCAL, STT_FUNC, STT_NOTYPE,
                     STT_OBJECT, STT_SECTION, ElfImage)
from .relocate import CALL, PSEUDO_CALL, CodeSection, Func, LinkError, Ref, apply_refs, check_reloc_slot, link
from .sections import prog_type_of

UNSPEC = "unspec"
IPROUTE2_TAIL = re.compile(r"(\d+)/(\d+)")


@dataclass(eq=False)
class ProgramSpec:
    """One program of an object. `insns` are the program followed by the subprograms it calls (calls
    linked, lddw map/data references not yet patched); `len(spec)` is their count."""
    name: str
    section: str
    prog_type: str
    code: bytes
    license: str = ""
    kern_version: int | None = None        # None: no `version` section (load uses the runtime's)
    refs: list = field(default_factory=list, repr=False)     # [(slot, relocate.Ref)]
    error: str | None = None               # why it cannot load (recursion, extern symbol ...), if known
    error_pc: int | None = None
    subprograms: list = field(default_factory=list)          # names of linked subprograms
    _insns: list | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.code) // 8

    @property
    def insns(self) -> list:
        if self._insns is None:
            self._insns = isa.decode(self.code)
        return self._insns

    @property
    def maps(self) -> list[str]:
        """Names of the maps (and global data sections) its instructions refer to."""
        return list(dict.fromkeys(r.name for _, r in self.refs if r.kind in ("map", "data")))


class SpecDict(dict):
    """name -> ProgramSpec, also reachable by section name (the first program of that section)."""

    def __missing__(self, key):
        for spec in self.values():
            if spec.section == key:
                return spec
        raise KeyError(key)


@dataclass
class LoadedObject:
    runtime: object
    programs: dict
    maps: dict
    object: "ObjectFile"


class ObjectFile:
    def __init__(self, data: bytes, name: str = "<bytes>", prog_types: dict | None = None):
        self.name = name
        self.elf = ElfImage(data)
        self.btf = self._btf()
        self.license = self._license()
        self.kern_version = self._version()
        self.maps: dict[str, MapSpec] = {}
        self._map_at: dict[tuple[int, int], tuple[str, int]] = {}     # (section, offset) -> (map, def size)
        self._data_sections: dict[int, str] = {}
        self._read_data_sections()
        self._read_legacy_maps()
        self._read_btf_maps()
        self._code = self._read_code()
        self.programs: SpecDict = SpecDict()
        self._make_programs(prog_types or {})

    @classmethod
    def open(cls, source, prog_types: dict | None = None) -> "ObjectFile":
        """Parse an object from a path or its bytes. prog_types overrides the type of programs by program
        or section name ({"my_prog": "raw"}). Raises ELFError for malformed objects; no side effects."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls(bytes(source), "<bytes>", prog_types)
        path = os.fspath(source)
        with open(path, "rb") as f:
            data = f.read()
        return cls(data, path, prog_types)

    def __repr__(self) -> str:
        return f"<ObjectFile {self.name}: {len(self.programs)} programs, {len(self.maps)} maps>"

    # ------------------------------------------------------------------ metadata sections
    def _btf(self) -> B.Btf | None:
        s = self.elf.section_by_name(".BTF")
        return B.Btf(s.data, ".BTF") if s is not None and s.size else None

    def _license(self) -> str:
        s = self.elf.section_by_name("license")
        return s.data.split(b"\0", 1)[0].decode("utf-8", "replace") if s is not None else ""

    def _version(self) -> int | None:
        s = self.elf.section_by_name("version")
        if s is None:
            return None
        if len(s.data) != 4:
            raise ELFError(f"version section is {len(s.data)} bytes, expected 4 (a u32)", "version", 0)
        return struct.unpack("<I", s.data)[0]

    def _section_symbols(self, shndx: int, types=(STT_OBJECT, STT_NOTYPE)) -> list[tuple[str, int, int]]:
        """(name, value, size) of the named symbols of one section, by value."""
        elf = self.elf
        syms = elf.symbols
        idx = [i for i in (syms["shndx"] == shndx).nonzero()[0].tolist() if (syms["info"][i] & 0xF) in types]
        out = [(elf.sym_name(i), int(syms["value"][i]), int(syms["size"][i])) for i in idx]
        return sorted((s for s in out if s[0]), key=lambda s: s[1])

    # ------------------------------------------------------------------ maps
    def _read_data_sections(self) -> None:
        for s in self.elf.sections:
            if s.type not in (SHT_PROGBITS, SHT_NOBITS) or not s.size or s.executable:
                continue
            if not any(s.name == p or s.name.startswith(p + ".") for p in DATA_PREFIXES):
                continue
            if s.size > MAX_MAP_BYTES:
                raise ELFError(f"global data section of {s.size} bytes is too large", s.name, 0)
            self.maps[s.name] = data_map_spec(s.name, s.data, s.size, s.name)
            self._data_sections[s.index] = s.name

    def _read_legacy_maps(self) -> None:
        for s in self.elf.sections:
            if s.name != "maps" and not s.name.startswith("maps/"):
                continue
            syms = self._section_symbols(s.index)
            if not syms:
                continue
            if s.type == SHT_NOBITS:
                raise ELFError("legacy maps section has no contents (SHT_NOBITS)", s.name, 0)
            sizes = legacy_def_size(s.size, syms, self.btf)
            for name, value, size in syms:
                per = sizes[name]
                count = max(1, (size or per) // per) if per else 1
                for i in range(count):
                    off = value + i * per
                    raw = s.data[off:off + per]
                    if len(raw) < per or per < 20:
                        raise ELFError(f"map {name!r}: definition of {per} bytes at {off:#x} runs past the end "
                                       f"of the section ({s.size} bytes)" if per >= 20 else
                                       f"map {name!r}: definition of {per} bytes is shorter than 20", s.name, off)
                    mname = name if count == 1 else f"{name}[{i}]"
                    self.maps[mname] = legacy_map_def(mname, raw, s.name, off)
                    self._map_at[(s.index, off)] = (mname, per)

    def _read_btf_maps(self) -> None:
        s = self.elf.section_by_name(".maps")
        if s is None:
            return
        syms = self._section_symbols(s.index)
        btf = self.btf
        if syms and btf is None:
            raise ELFError("BTF-defined maps need a .BTF section (compile with -g)", ".maps", 0)
        values_at: dict[str, tuple[int, int]] = {}
        for name, value, size in syms:
            assert btf is not None
            var = btf.find(name, B.VAR)
            if var is None:
                raise ELFError(f"map {name!r} has no BTF variable", ".maps", value)
            spec, values_off = btf_map_def(btf, name, var.size_or_type, ".maps", value)
            self.maps[name] = spec
            self._map_at[(s.index, value)] = (name, size or btf.size(var.size_or_type))
            if values_off >= 0:
                values_at[name] = (value, values_off)
        rel = self.elf.relocations.get(s.index)
        if rel is None:
            return
        for i, (off, sym) in enumerate(zip(rel.offset.tolist(), rel.sym.tolist())):
            owner = next((n for n, (v, vo) in values_at.items()
                          if v + vo <= off < v + self._map_at[(s.index, v)][1]), None)
            if owner is None:
                raise ELFError(f"relocation at {off:#x} is not inside a map's `values`", rel.section.name,
                               i * 16)
            v, vo = values_at[owner]
            slot = (off - v - vo) // 8
            spec = self.maps[owner]
            if not 0 <= slot < spec.max_entries:
                raise ELFError(f"map {owner!r}: `values` index {slot} is outside max_entries {spec.max_entries}",
                               rel.section.name, i * 16)
            spec.values[slot] = self.elf.sym_name(sym)

    # ------------------------------------------------------------------ code
    def _read_code(self) -> dict[int, CodeSection]:
        elf = self.elf
        code: dict[int, CodeSection] = {}
        for s in elf.sections:
            if s.executable and s.size:
                if s.size % 8:
                    raise ELFError(f"code size {s.size} is not a multiple of 8", s.name, s.size - s.size % 8)
                code[s.index] = CodeSection(s.index, s.name, s.data)
        syms = elf.symbols
        by_sec: dict[int, list[Func]] = {i: [] for i in code}
        for i in ((syms["info"] & 0xF) == STT_FUNC).nonzero()[0].tolist():
            name, _t, bind, shndx, value, size = elf.sym(i)
            sec = code.get(shndx)
            if sec is None:
                continue
            n = len(sec.code) // 8
            if value % 8 or size % 8 or value // 8 >= n or (value + size) // 8 > n:
                raise ELFError(f"function {name!r} ({size} bytes at {value:#x}) is not inside its section "
                               f"({len(sec.code)} bytes)", sec.name, value)
            by_sec[shndx].append(Func(name, shndx, value // 8, (value + size) // 8, bind != STB_LOCAL))
        for idx, sec in code.items():
            funcs = sorted(by_sec[idx], key=lambda f: f.start)
            n = len(sec.code) // 8
            if not funcs:      # old toolchains: no function symbols, one program per section
                named = [s for s in self._section_symbols(idx) if s[1] == 0]
                funcs = [Func(named[0][0] if named else sec.name, idx, 0, n, True)]
            for j, f in enumerate(funcs):   # size 0 (old toolchains): up to the next function
                if f.end <= f.start:
                    f.end = funcs[j + 1].start if j + 1 < len(funcs) else n
            sec.set_funcs(funcs)
        self._classify_relocations(code)
        return code

    def _classify_relocations(self, code: dict[int, CodeSection]) -> None:
        elf = self.elf
        nsec = len(elf.sections)
        for idx, sec in code.items():
            rel = elf.relocations.get(idx)
            if rel is None:
                continue
            entsize = 16 if rel.addend is None else 24
            addends = rel.addend.tolist() if rel.addend is not None else None
            for i, (off, symi) in enumerate(zip(rel.offset.tolist(), rel.sym.tolist())):
                slot, op = check_reloc_slot(sec, off, rel.section.name, i * entsize)
                name, stype, _bind, shndx, value, _size = elf.sym(symi)
                if shndx != SHN_UNDEF and shndx < SHN_LORESERVE and shndx >= nsec:
                    raise ELFError(f"relocation to symbol {name!r} in section #{shndx}, which does not exist",
                                   rel.section.name, i * entsize)
                imm = sec.imm(slot) + (addends[i] if addends is not None else 0)
                sec.refs[slot] = self._ref(op, sec, slot, name, stype, shndx, value, imm, code)

    def _ref(self, op, sec, slot, name, stype, shndx, value, imm, code) -> Ref:
        where = f"instruction {slot} of {sec.name!r}"
        if shndx == SHN_UNDEF:
            what = "function" if op == CALL else "variable"
            return Ref("error", f"call to unknown extern {what} {name!r}" if op == CALL
                       else f"reference to extern {what} {name!r} (.kconfig/.ksyms externs are not supported)")
        if op == CALL:
            if shndx not in code:
                return Ref("error", f"call at {where} to {name!r}, which is not a function")
            src = sec.code[slot * 8 + 1] >> 4
            if src != PSEUDO_CALL:
                return Ref("error", f"call at {where} has a relocation to {name!r} but is not a bpf-to-bpf call")
            return Ref("call", name, section=shndx, slot=value // 8 + imm + 1)
        off = value + imm
        if shndx in self._data_sections:
            return Ref("data", self._data_sections[shndx], off)
        hit = self._map_at.get((shndx, off))          # &maps[1]: the symbol + the imm clang wrote
        if hit is None and stype != STT_SECTION:
            hit = self._map_at.get((shndx, value))
        if hit is not None:
            return Ref("map", hit[0])
        if shndx in code:
            return Ref("error", f"lddw at {where} takes the address of function {name!r} (callbacks are not "
                                "supported)")
        sname = self.elf.sections[shndx].name if shndx < len(self.elf.sections) else f"#{shndx}"
        return Ref("error", f"lddw at {where} refers to {name!r} at offset {off} of section {sname!r}, which "
                            "is not a map or global data")

    def _make_programs(self, overrides: dict) -> None:
        code = self._code
        prog_secs = [s for s in code.values() if s.name != ".text"] or list(code.values())
        cache: dict = {}
        for sec in prog_secs:
            funcs = [f for f in sec.funcs if f.is_global] or sec.funcs
            for f in funcs:
                ptype = overrides.get(f.name) or overrides.get(sec.name) or prog_type_of(sec.name) or UNSPEC
                spec = ProgramSpec(f.name, sec.name, ptype, b"", self.license, self.kern_version)
                try:
                    linked = link(f, code, cache)
                except LinkError as e:
                    spec.code = sec.code[f.start * 8:f.end * 8]
                    spec.error, spec.error_pc = str(e), e.pc
                else:
                    spec.code, spec.refs = linked.code, linked.refs
                    spec.subprograms = [g.name for g in linked.funcs[1:]]
                    bad = next(((pc, r) for pc, r in linked.refs if r.kind == "error"), None)
                    if bad is not None:
                        spec.error_pc, spec.error = bad[0], bad[1].name
                if f.name in self.programs:
                    raise ELFError(f"two programs named {f.name!r}", sec.name, f.start * 8)
                self.programs[f.name] = spec
        self._iproute2_tail_calls(overrides)

    def _iproute2_tail_calls(self, overrides: dict) -> None:
        """iproute2's convention: a program in section "ID/KEY" goes into slot KEY of the prog_array whose
        bpf_elf_map id is ID, and has the type of the object's other programs (tc loads them all as one)."""
        matches = [(p, IPROUTE2_TAIL.fullmatch(p.section)) for p in self.programs.values()]
        tails = [(p, int(m[1]), int(m[2])) for p, m in matches if m]
        if not tails:
            return
        main = next((p.prog_type for p in self.programs.values() if p.prog_type != UNSPEC), UNSPEC)
        arrays = {m.elf_id: m for m in self.maps.values() if m.type == "prog_array" and m.elf_id}
        for spec, map_id, key in tails:
            if spec.prog_type == UNSPEC and spec.name not in overrides and spec.section not in overrides:
                spec.prog_type = main
            target = arrays.get(map_id)
            if target is not None and key < target.max_entries:
                target.values.setdefault(key, spec.name)

    # ------------------------------------------------------------------ load
    def load(self, runtime=None, config=None, programs=None) -> LoadedObject:
        """Create the maps the selected programs use in `runtime` (a new Runtime if None), patch their
        references, build and check each Program, fill prog_array `values`. `programs`: names to load
        (default all). LoadError names the program (and instruction) that cannot load."""
        from ..program import DEFAULT_CONFIG, Program
        from ..progtypes import PROG_TYPES
        from ..runtime import Runtime
        rt = runtime if runtime is not None else Runtime(config=config)
        config = config or rt.config or DEFAULT_CONFIG
        names = list(self.programs) if programs is None else list(programs)
        specs = []
        for n in names:
            if n not in self.programs:
                raise LoadError(f"{self.name}: no program {n!r}; programs: {', '.join(self.programs)}")
            specs.append(self.programs[n])
        for spec in specs:
            if spec.error is not None:
                raise LoadError(f"program {spec.name!r}: {spec.error}", spec.error_pc)
            if spec.prog_type not in PROG_TYPES:
                hint = (f"section {spec.section!r} names no known program type" if spec.prog_type == UNSPEC
                        else f"program type {spec.prog_type!r} is not supported by this runtime")
                raise LoadError(f"program {spec.name!r}: {hint} (supported: {', '.join(PROG_TYPES)}; "
                                f"override with ObjectFile.open(..., prog_types={{{spec.name!r}: TYPE}}))",
                                None, "prog_type")
        # maps: those the programs use, plus prog_array/map-in-map maps whose values name them
        wanted = list(dict.fromkeys(m for spec in specs for m in spec.maps))
        wanted = list(dict.fromkeys(wanted + [t for m in wanted if self.maps[m].type in MAP_IN_MAP   # inner maps
                                              for t in self.maps[m].values.values() if t in self.maps]))
        live = {mname: create_map(self.maps[mname], rt) for mname in wanted}    # all or none are registered
        fds = {mname: rt.add_map(m, mname) for mname, m in live.items()}
        loaded = {}
        for spec in specs:
            loaded[spec.name] = self._build(spec, fds, rt, config, Program)
        for mname, m in live.items():
            ms = self.maps[mname]
            for slot, target in sorted(ms.values.items()):
                if ms.type == "prog_array" and target in loaded:
                    try:
                        m[slot] = loaded[target]
                    except BPFError as e:
                        raise LoadError(f"map {mname!r}: cannot put program {target!r} in slot {slot}: {e}") \
                            from None
                elif ms.type in MAP_IN_MAP and target in live:
                    try:
                        m[slot] = live[target]
                    except BPFError as e:
                        raise LoadError(f"map {mname!r}: cannot put map {target!r} in slot {slot}: {e}") from None
        return LoadedObject(rt, loaded, live, self)

    def _build(self, spec: ProgramSpec, fds: dict, rt, config, Program):
        code = apply_refs(spec.code, spec.refs, fds)
        kv = spec.kern_version if spec.kern_version is not None else rt.kern_version
        try:
            prog = Program.from_bytes(bytes(code), config, name=spec.name, license=spec.license,
                                      kern_version=kv, prog_type=spec.prog_type)
        except LoadError as e:
            raise LoadError(f"program {spec.name!r}: {e.reason}", e.pc, e.field) from None
        for pc, f in enumerate(prog.forms):
            if f is not None and f.op == "call" and rt.helpers.get(prog.insns[pc].imm) is None:
                raise LoadError(f"program {spec.name!r}: call to unknown helper id {prog.insns[pc].imm}", pc,
                                "imm")
        try:
            rt.check_program(prog)
        except LoadError as e:
            raise LoadError(f"program {spec.name!r}: {e.reason}", e.pc, e.field) from None
        prog.maps = spec.maps
        return prog
