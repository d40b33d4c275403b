"""The docs that are generated from the one source of truth stay equal to it."""
from __future__ import annotations

import re
from pathlib import Path

from bpfjit import isa

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
