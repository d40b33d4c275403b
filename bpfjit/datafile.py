"""Parser for bpf_conformance `.data` test files (sections: asm, raw, mem, result, error).

Used by the conformance tests and `bpfjit run`. Knows the file format only: assembling and running are
done by the callers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import isa


@dataclass
class DataFile:
    path: str
    asm: str | None = None
    raw: bytes | None = None
    mem: bytes = b""
    result: int | None = None
    error: str | None = None
    has_mem: bool = False


_SECTION = re.compile(r"^--\s*(.*?)\s*$")


def parse(text: str, path: str = "<data>") -> DataFile:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append(line)
    df = DataFile(path)
    if "asm" in sections:
        df.asm = "\n".join(sections["asm"]) + "\n"
    if "raw" in sections:
        df.raw = _parse_raw(sections["raw"])
    if "mem" in sections:
        df.has_mem = True
        df.mem = bytes(int(tok, 16) for tok in _tokens(sections["mem"]))
    if "result" in sections:
        toks = _tokens(sections["result"])
        if toks:
            df.result = int(toks[0], 0) & ((1 << 64) - 1)
    if "error" in sections:
        df.error = "\n".join(_strip_comment(s) for s in sections["error"]).strip()
    return df


def load(path) -> DataFile:
    p = Path(path)
    return parse(p.read_text(), str(p))


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0]


def _tokens(lines) -> list[str]:
    return [t for ln in lines for t in _strip_comment(ln).split()]


def _parse_raw(lines) -> bytes:
    """Either 64-bit words (`0x...` one per token) or lines of 8 hex bytes (the negative files)."""
    toks = _tokens(lines)
    if toks and all(len(t) == 2 and not t.startswith("0x") for t in toks):
        return bytes(int(t, 16) for t in toks)
    words = [int(t, 16) for t in toks]
    return b"".join(w.to_bytes(8, "little") for w in words)


def insns_of(df: DataFile):
    """The program of a data file: raw if present, else the assembled asm."""
    if df.raw is not None:
        return isa.decode(df.raw)
    from .asm import assemble_insns
    return assemble_insns(df.asm or "")
