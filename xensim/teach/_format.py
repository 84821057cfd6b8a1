"""A finished trace and its two renderings: plain text and Markdown."""

from __future__ import annotations

from dataclasses import dataclass

from ._tree import Line

TRACE_FORMATS = ("text", "md")


@dataclass
class TraceResult:
    config: str
    design: str
    level: str
    header: list[str]
    setup: list[str]
    lines: list[Line]
    footer: list[str]
    untraced: int = 0
    calls: int = 0

    def text(self) -> str:
        out = list(self.header) + ["set-up (not traced):"] + [f"  {s}" for s in self.setup] + [""]
        for ln in self.lines:
            if ln.kind == "op" and out and out[-1] != "":
                out.append("")
            out.append("  " * ln.depth + ln.text)
        out += [""] + list(self.footer)
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"# xensim trace: `{self.config}`", ""]
        out += [f"- {_md(h)}" for h in self.header[1:]] + [""]
        out += ["## Set-up (not traced)", ""] + [f"- {_md(s)}" for s in self.setup] + [""]
        out += ["## Operations", ""]
        for ln in self.lines:
            if ln.kind == "op":
                out += ([""] if out[-1] != "" else []) + [f"### {_md_plain(ln.text)}", ""]
                continue
            depth = ln.depth + 1 if ln.kind == "result" else ln.depth     # under its call
            bullet = "  " * max(depth - 1, 0) + "- "
            out.append(bullet + _md(ln.text))
        out += ["", "## Summary", ""] + [f"- {_md(f)}" for f in self.footer]
        return "\n".join(out) + "\n"

    def render(self, fmt: str = "text") -> str:
        return self.markdown() if fmt == "md" else self.text()


def _md(text: str) -> str:
    """A trace line as Markdown: in a code span (its ``|``, ``*`` and ``_`` stay literal)."""
    return f"`{text}`" if "`" not in text else text


def _md_plain(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")
