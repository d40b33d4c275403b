"""BTF decoding (the `.BTF` section of a BPF object): the type table, names, sizes, and numpy dtypes of
plain C structs, as much as the loader needs for BTF-defined maps (`.maps`), `SEC("maps")` arrays and
typed map keys/values.

`Btf(data, section=".BTF")` parses the header, string table and every type record; any inconsistency is
an `ELFError` naming the section and the offset of the bad record. Nothing here knows about maps or
programs (maps.py interprets the types); `.BTF.ext` (line info, CO-RE relocations) is not decoded.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import ELFError

MAGIC = 0xEB9F
(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR,
 DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
KIND_NAMES = {INT: "int", PTR: "ptr", ARRAY: "array", STRUCT: "struct", UNION: "union", ENUM: "enum",
              FWD: "fwd", TYPEDEF: "typedef", VOLATILE: "volatile", CONST: "const", RESTRICT: "restrict",
              FUNC: "func", FUNC_PROTO: "func_proto", VAR: "var", DATASEC: "datasec", FLOAT: "float",
              DECL_TAG: "decl_tag", TYPE_TAG: "type_tag", ENUM64: "enum64"}
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4

# kind -> (bytes of the fixed extra record, bytes per vlen entry)
_EXTRA = {INT: (4, 0), PTR: (0, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
          FWD: (0, 0), TYPEDEF: (0, 0), VOLATILE: (0, 0), CONST: (0, 0), RESTRICT: (0, 0), FUNC: (0, 0),
          FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), FLOAT: (0, 0), DECL_TAG: (4, 0),
          TYPE_TAG: (0, 0), ENUM64: (0, 12)}
MAX_RESOLVE = 32          # modifier chains longer than this are a loop


@dataclass
class Member:
    name: str
    type: int
    offset: int          # bits (struct/union), value (enum), byte offset (datasec), 0 (func_proto)
    size: int = 0        # datasec entries: bytes; struct bitfields: bit size (0 = not a bitfield)


@dataclass
class Type:
    id: int
    kind: int
    name: str
    size_or_type: int    # size for int/struct/union/enum/datasec/float, type id for the others
    vlen: int
    kind_flag: bool
    extra: tuple = ()    # int: (encoding, bit offset, bits); array: (elem type, index type, nelems); var: (linkage,)
    members: list[Member] = field(default_factory=list)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


class Btf:
    def __init__(self, data: bytes, section: str = ".BTF"):
        self.section = section
        if len(data) < 24:
            raise ELFError(f"BTF header truncated ({len(data)} bytes)", section, 0)
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII",
                                                                                                    data, 0)
        if magic != MAGIC:
            raise ELFError(f"bad BTF magic {magic:#x}", section, 0)
        if version != 1:
            raise ELFError(f"BTF version {version} is not supported (1)", section, 2)
        if hdr_len < 24 or hdr_len > len(data):
            raise ELFError(f"bad BTF header length {hdr_len}", section, 4)
        body = len(data) - hdr_len
        for what, off, ln in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off > body or ln > body - off:
                raise ELFError(f"BTF {what} section ({ln} bytes at {off}) runs past the end ({body} bytes)",
                               section, hdr_len)
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self.types: list[Type | None] = [None]       # id 0 is void
        self._parse_types(data, hdr_len + type_off, hdr_len + type_off + type_len)
        self._by_name: dict[tuple[int, str], int] | None = None

    def _str(self, off: int, where: int) -> str:
        if off == 0:
            return ""
        if off >= len(self.strings):
            raise ELFError(f"BTF name offset {off} is outside the string section", self.section, where)
        end = self.strings.find(b"\0", off)
        if end < 0:
            raise ELFError(f"BTF string at {off} is not NUL-terminated", self.section, where)
        return self.strings[off:end].decode("utf-8", "replace")

    def _parse_types(self, data: bytes, pos: int, end: int) -> None:
        unpack3 = struct.Struct("<III").unpack_from
        while pos < end:
            if end - pos < 12:
                raise ELFError("truncated BTF type record", self.section, pos)
            name_off, info, st = unpack3(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            if kind not in _EXTRA:
                raise ELFError(f"unknown BTF kind {kind} (type {len(self.types)})", self.section, pos)
            fixed, per = _EXTRA[kind]
            rec_end = pos + 12 + fixed + per * vlen
            if rec_end > end:
                raise ELFError(f"BTF type {len(self.types)} runs past the type section", self.section, pos)
            t = Type(len(self.types), kind, self._str(name_off, pos), st, vlen, bool(info >> 31))
            p = pos + 12
            if kind == INT:
                (v,) = struct.unpack_from("<I", data, p)
                t.extra = ((v >> 24) & 0xF, (v >> 16) & 0xFF, v & 0xFF)
            elif kind == ARRAY:
                t.extra = struct.unpack_from("<III", data, p)
            elif kind in (VAR, DECL_TAG):
                t.extra = struct.unpack_from("<I", data, p)
            p += fixed
            if per:
                for i in range(vlen):
                    q = p + i * per
                    if kind in (STRUCT, UNION):
                        n, ty, off = unpack3(data, q)
                        bits = off >> 24 if t.kind_flag else 0
                        t.members.append(Member(self._str(n, q), ty, off & 0xFFFFFF if t.kind_flag else off,
                                                bits))
                    elif kind == ENUM:
                        n, val = struct.unpack_from("<Ii", data, q)
                        t.members.append(Member(self._str(n, q), 0, val))
                    elif kind == ENUM64:
                        n, lo, hi = unpack3(data, q)
                        t.members.append(Member(self._str(n, q), 0, lo | hi << 32))
                    elif kind == FUNC_PROTO:
                        n, ty = struct.unpack_from("<II", data, q)
                        t.members.append(Member(self._str(n, q), ty, 0))
                    else:    # DATASEC
                        ty, off, size = unpack3(data, q)
                        t.members.append(Member("", ty, off, size))
            self.types.append(t)
            pos = rec_end

    # ---- queries ----
    def type(self, tid: int) -> Type | None:
        """Type by id (None for void); ELFError for an id outside the table."""
        if not 0 <= tid < len(self.types):
            raise ELFError(f"BTF type id {tid} does not exist ({len(self.types) - 1} types)", self.section)
        return self.types[tid]

    def resolve(self, tid: int) -> Type | None:
        """Skip typedef/const/volatile/restrict/type_tag."""
        for _ in range(MAX_RESOLVE):
            t = self.type(tid)
            if t is None or t.kind not in MODIFIERS:
                return t
            tid = t.size_or_type
        raise ELFError(f"BTF type {tid}: modifier chain too long (a loop?)", self.section)

    def size(self, tid: int, depth: int = 0) -> int:
        """Byte size of a type (as libbpf's btf__resolve_size)."""
        if depth > MAX_RESOLVE:
            raise ELFError(f"BTF type {tid}: type nesting too deep (a loop?)", self.section)
        t = self.resolve(tid)
        if t is None:
            raise ELFError("BTF: void has no size", self.section)
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return t.extra[2] * self.size(t.extra[0], depth + 1)
        if t.kind == VAR:
            return self.size(t.size_or_type, depth + 1)
        raise ELFError(f"BTF type {tid} ({t.kind_name}) has no size", self.section)

    def find(self, name: str, kind: int) -> Type | None:
        if self._by_name is None:
            self._by_name = {}
            for t in self.types[1:]:
                if t is not None:
                    self._by_name.setdefault((t.kind, t.name), t.id)
        tid = self._by_name.get((kind, name))
        return None if tid is None else self.types[tid]

    def dtype(self, tid: int, depth: int = 0) -> np.dtype | None:
        """The numpy dtype of a plain C type (ints, floats, enums, arrays and structs of them), or None when
        numpy cannot describe it (unions, bitfields, pointers are given as u8)."""
        if depth > MAX_RESOLVE:
            return None
        t = self.resolve(tid)
        if t is None:
            return None
        if t.kind == INT:
            enc = t.extra[0]
            if t.size_or_type not in (1, 2, 4, 8) or t.extra[2] != 8 * t.size_or_type:
                return None
            return np.dtype(("<i" if enc & INT_SIGNED else "<u") + str(t.size_or_type))
        if t.kind in (ENUM, ENUM64) and t.size_or_type in (1, 2, 4, 8):
            return np.dtype(f"<u{t.size_or_type}")
        if t.kind == FLOAT and t.size_or_type in (4, 8):
            return np.dtype(f"<f{t.size_or_type}")
        if t.kind == PTR:
            return np.dtype("<u8")
        if t.kind == ARRAY:
            elem = self.dtype(t.extra[0], depth + 1)
            return None if elem is None or t.extra[2] == 0 else np.dtype((elem, (t.extra[2],)))
        if t.kind == STRUCT:
            names, formats, offsets = [], [], []
            for i, m in enumerate(t.members):
                if m.size or m.offset % 8:
                    return None                       # bitfield
                d = self.dtype(m.type, depth + 1)
                if d is None:
                    return None
                names.append(m.name or f"_{i}")
                formats.append(d)
                offsets.append(m.offset // 8)
            if len(set(names)) != len(names):
                return None
            try:
                return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                 "itemsize": t.size_or_type})
            except (ValueError, TypeError):
                return None
        return None
