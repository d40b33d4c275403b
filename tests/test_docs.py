"""The docs that are generated from the one source of truth stay equal to it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bpfjit import VM, Program, Runtime, isa
from bpfjit.asm import assemble_insns, disassemble

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0].lstrip("\n")


def test_isa_doc_matches_table():
    text = (DOCS / "isa.md").read_text()
    assert _between(text, "<!-- BEGIN ISA TABLE -->", "<!-- END ISA TABLE -->") == isa.markdown_table(), \
        "docs/isa.md is stale: regenerate the table with isa.markdown_table()"


def test_readme_python_examples_run():
    """Every ```python block of the README runs as written."""
    text = (DOCS.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


_DEEP_IMPORT = re.compile(r"^\s*(?:from\s+(bpfjit\.[\w.]+)\s+import|import\s+(bpfjit\.[\w.]+))", re.M)


def _python_blocks(path: Path) -> list[str]:
    return [b.split("```", 1)[0] for b in path.read_text().split("```python\n")[1:]]


def test_examples_import_only_from_bpfjit():
    """README, docs and examples/ use the public API: `from bpfjit import ...`, never a submodule."""
    sources = {p: "".join(_python_blocks(p)) for p in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]}
    sources.update({p: p.read_text() for p in sorted((DOCS.parent / "examples").glob("*.py"))})
    assert any("from bpfjit import" in text for text in sources.values())
    deep = [f"{p.name}: {m[1] or m[2]}" for p, text in sources.items() for m in _DEEP_IMPORT.finditer(text)]
    assert not deep, f"examples import bpfjit submodules: {deep}"


# ------------------------------------------------------------------------------------ docs/assembly.md
ASSEMBLY = DOCS / "assembly.md"
DOC_MAPS = ["counts", "values"]          # the maps the lddw examples name


def _asm_blocks() -> list[str]:
    return [b.split("```", 1)[0] for b in ASSEMBLY.read_text().split("```asm\n")[1:]]


def _marker(block: str, name: str) -> str | None:
    m = re.search(rf"^#\s*{name}:\s*(.*)$", block, re.M)
    return m[1].strip() if m else None


def _doc_helpers():
    """The runtime's helpers plus `double` (id 300), as the examples say."""
    reg = Runtime().helpers.copy()
    reg.helper(300, name="double")(lambda ctx, r1, r2, r3, r4, r5: r1 * 2)
    return reg


BLOCKS = _asm_blocks()
RUNNABLE = [b for b in BLOCKS if _marker(b, "result") is not None]


def _first_line(block: str) -> str:
    return next(ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#"))[:30]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{i}:{_first_line(b)}" for i, b in enumerate(BLOCKS)])
def test_assembly_examples_assemble_load_and_round_trip(block):
    helpers = _doc_helpers()
    insns = assemble_insns(block, helpers=helpers, maps=DOC_MAPS)
    Program.from_insns(insns)                                            # loads (validation)
    named = disassemble(insns, helpers=helpers)
    assert assemble_insns(named, helpers=helpers) == insns
    assert assemble_insns(disassemble(insns)) == insns                   # numeric helper ids too


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"{i}:{_first_line(b)}" for i, b in enumerate(RUNNABLE)])
def test_assembly_examples_return_their_result(block, engine):
    helpers = _doc_helpers()
    mem = _marker(block, "mem")
    prog = Program.from_asm(block, helpers=helpers)
    r0 = VM(prog, engine, helpers=helpers).run(bytes.fromhex(mem) if mem else None)
    assert r0 == int(_marker(block, "result") or "", 0) & ((1 << 64) - 1)


def test_assembly_examples_cover_every_instruction_kind():
    helpers = _doc_helpers()
    ops = {isa.form_of(i).op for b in BLOCKS for i in Program.from_insns(
        assemble_insns(b, helpers=helpers, maps=DOC_MAPS)).insns if isa.form_of(i) is not None}
    missing = {f.op for f in isa.FORMS} - ops
    assert not missing, f"docs/assembly.md has no example of {sorted(missing)}"


def test_assembly_doc_names_every_mnemonic():
    named = set(re.findall(r"`([^`\n]+)`", ASSEMBLY.read_text()))
    missing = set(isa.BY_MNEMONIC) - named - {"call local", "call btf"}
    assert not missing, f"docs/assembly.md does not name {sorted(missing)}"
    assert {"call local T", "call btf N"} <= named


def test_assembly_doc_python_examples_run():
    blocks = _python_blocks(ASSEMBLY)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/assembly.md", "exec"), {})


def test_isa_doc_links_to_assembly_doc():
    assert "assembly.md" in (DOCS / "isa.md").read_text() and ASSEMBLY.is_file()
