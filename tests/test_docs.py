"""The docs that are generated from the one source of truth stay equal to it."""
from __future__ import annotations

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
