"""The Markdown documents: README.md and docs/ render as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def split_tables(text: str) -> list[int]:
    """Line numbers (1-based) of table rows that follow a blank line after a table
    without a header of their own: Markdown renders them as raw text."""
    lines = text.splitlines()
    bad, in_code, last_table_row = [], False, None
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.lstrip().startswith("|"):
            starts_table = i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1].strip())
            prev_blank = i > 0 and not lines[i - 1].strip()
            if prev_blank and last_table_row is not None and not starts_table:
                bad.append(i + 1)
            last_table_row = i
        elif line.strip():
            last_table_row = None
    return bad


def test_split_tables_finds_a_row_after_a_blank_line():
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n"
    assert split_tables(text) == [5]
    assert split_tables(text.replace("\n\n", "\n")) == []
    two = "| a |\n|---|\n| 1 |\n\n| b |\n|---|\n| 2 |\n"
    assert split_tables(two) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_table_is_split_by_a_blank_line(doc):
    assert split_tables(doc.read_text()) == [], f"{doc.name}: a table row after a blank line"


def test_readme_set_up_is_two_commands_in_a_virtual_environment():
    """A bare pip install fails where Python is externally managed (PEP 668): the first
    set-up command makes and enters a virtual environment; still two commands; the
    tests' duration is said; trace's --limit and inspect's --superpage forms are explained."""
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up and use", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [ln.split("  #")[0].strip() for ln in setup.splitlines() if ln.strip()]
    assert commands == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && xensim run",
        "pip install -e '.[test]' && python -m pytest"]
    assert "The tests take about" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| `xensim trace"))
    assert "[--limit N]" in row and "`--limit N` traces the first N operations" in row
    row = next(ln for ln in text.splitlines() if ln.startswith("| `xensim inspect"))
    assert "`--superpage 0x200`" in row and "`--superpage web:1`" in row
