"""Parser of bpf_conformance `.data` test files (sections: asm, raw, mem, result, error).

Used by the conformance tests, `bpfjit conformance` and `bpfjit run`. Knows the file format only: assembling
and running are done by the callers. A malformed file raises `DataFileError` naming the line (1-based, from
the top of the file), never a bare `int()` error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import isa
from .errors import BPFError
from .isa import Insn


class DataFileError(BPFError, ValueError):
    """A malformed `.data` file. Carries the 1-based line number and the line text (when known)."""

    def __init__(self, message: str, line_no: int | None = None, line: str | None = None):
        self.reason = message
        self.line_no = line_no
        self.line = line
        where = f"line {line_no}: " if line_no is not None else ""
        text = f" ({line.strip()!r})" if line and line.strip() else ""
        super().__init__(f"malformed .data file: {where}{message}{text}")


@dataclass
class DataFile:
    path: str
    asm: str | None = None
    raw: bytes | None = None
    mem: bytes = b""
    result: int | None = None
    error: str | None = None
    has_mem: bool = False
    asm_line: int = 0          # line number of the `-- asm` header (asm line N is file line asm_line + N)


_SECTION = re.compile(r"^--\s*(.*?)\s*$")
_Line = tuple[int, str]        # (1-based line number, text)


def parse(text: str, path: str = "<data>") -> DataFile:
    sections: dict[str, list[_Line]] = {}
    headers: dict[str, int] = {}
    current: str | None = None
    for line_no, line in enumerate(text.splitlines(), 1):
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            sections.setdefault(current, [])
            headers.setdefault(current, line_no)
            continue
        if current is not None:
            sections[current].append((line_no, line))
    df = DataFile(path)
    if "asm" in sections:
        df.asm = "\n".join(line for _, line in sections["asm"]) + "\n"
        df.asm_line = headers["asm"]
    if "raw" in sections:
        df.raw = _parse_raw(sections["raw"])
    if "mem" in sections:
        df.has_mem = True
        df.mem = bytes(_number(tok, "mem byte", 16, 0, 0xFF) for tok in _tokens(sections["mem"]))
    if "result" in sections:
        toks = list(_tokens(sections["result"]))
        if len(toks) > 1:
            raise DataFileError("result: expected one number", toks[1].line_no, toks[1].line)
        if toks:
            df.result = _number(toks[0], "result", 0, -(1 << 63), (1 << 64) - 1) & ((1 << 64) - 1)
    if "error" in sections:
        df.error = "\n".join(_strip_comment(s) for _, s in sections["error"]).strip()
    return df


def load(path: str | Path) -> DataFile:
    p = Path(path)
    return parse(p.read_text(), str(p))


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0]


@dataclass(frozen=True)
class _Token:
    text: str
    line_no: int
    line: str


def _tokens(lines: Iterable[_Line]) -> list[_Token]:
    return [_Token(t, n, ln) for n, ln in lines for t in _strip_comment(ln).split()]


def _number(tok: _Token, what: str, base: int, lo: int, hi: int) -> int:
    """A number token in lo..hi (base 16 or 0 = Python literal syntax), else DataFileError at its line."""
    try:
        value = int(tok.text, base)
    except ValueError:
        kind = "hex number" if base == 16 else "number"
        raise DataFileError(f"{what} {tok.text!r} is not a {kind}", tok.line_no, tok.line) from None
    if not lo <= value <= hi:
        raise DataFileError(f"{what} {tok.text} is out of range ({lo:#x}..{hi:#x})", tok.line_no, tok.line)
    return value


def _parse_raw(lines: list[_Line]) -> bytes:
    """Either 64-bit words (`0x...` one per token) or lines of 8 hex bytes (the negative files)."""
    toks = _tokens(lines)
    if toks and all(len(t.text) == 2 and not t.text.startswith("0x") for t in toks):
        return bytes(_number(t, "raw byte", 16, 0, 0xFF) for t in toks)
    words = [_number(t, "raw instruction word", 16, 0, (1 << 64) - 1) for t in toks]
    return b"".join(w.to_bytes(8, "little") for w in words)


def insns_of(df: DataFile) -> list[Insn]:
    """The program of a data file: raw if present, else the assembled asm."""
    if df.raw is not None:
        return isa.decode(df.raw)
    from .asm import assemble_insns
    return assemble_insns(df.asm or "")
