"""The one place that renders a result: terminal table, JSON, CSV or Markdown.

A result is any object with ``to_dict()`` (the JSON form, an interface others
build on) and ``tables()`` (a list of :class:`Table`, the first of which is the
row-per-item table written as CSV). A result with ``csv_tables()`` is written as
CSV with every table it returns: each starts with its own header row, the tables
are separated by one empty line. CSV carries plain values (no units, no thousands
separators); floats are rounded to 10 significant digits (no ``0.30000000000000004``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

FORMATS = ("table", "json", "csv", "md")


@dataclass
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] = str
    align: str = ">"           # ">" numbers, "<" text


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[list[str]]:
        return [[c.fmt(r.get(c.key, "")) if r.get(c.key) is not None else "-"
                 for c in self.columns] for r in self.rows]


class Result(Protocol):
    def to_dict(self) -> dict: ...
    def tables(self) -> list[Table]: ...


def _text_table(t: Table) -> str:
    cells = t.cells()
    headers = [c.header for c in t.columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    def line(vals):
        return "  ".join(f"{v:{c.align}{w}}" for v, c, w in zip(vals, t.columns, widths)).rstrip()
    out = [t.title, line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out += [f"  {n}" for n in t.notes]
    return "\n".join(out)


def _md_table(t: Table) -> str:
    cells = t.cells()
    out = [f"### {t.title}", "", "| " + " | ".join(c.header for c in t.columns) + " |",
           "|" + "|".join("---:" if c.align == ">" else "---" for c in t.columns) + "|"]
    out += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in cells]
    if t.notes:
        out += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(out)


def csv_value(v) -> Any:
    """A plain CSV cell: None is empty, a float has at most 10 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return float(f"{v:.10g}")
    return v


def _csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.key for c in t.columns])
    for r in t.rows:
        w.writerow([csv_value(r.get(c.key)) for c in t.columns])
    return buf.getvalue()


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 schedule``, ``2 schedules``, ``1,024 entries`` (with ``many`` given)."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def to_json(result: Result) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n"


def render(result: Result, fmt: str = "table") -> str:
    if fmt == "json":
        return to_json(result)
    tables = result.tables()
    if fmt == "csv":
        if hasattr(result, "csv_tables"):
            return "\n".join(_csv(t) for t in result.csv_tables())
        return _csv(tables[0])
    if fmt == "md":
        return "\n\n".join(_md_table(t) for t in tables) + "\n"
    if fmt == "table":
        return "\n\n".join(_text_table(t) for t in tables) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def fmt_int(v) -> str:
    return f"{int(v):,}"


def fmt_hex(v) -> str:
    return f"{int(v):#x}"


def fmt_pct(v) -> str:
    return f"{float(v):.5f}%"
