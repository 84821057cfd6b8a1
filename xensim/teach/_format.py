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
    #: the run's crash (a DesignCrashed), if it crashed
    crash: Exception | None = None

    def text(self) -> str:
        return self.render("text")

    def markdown(self) -> str:
        return self.render("md")

    def render(self, fmt: str = "text") -> str:
        out: list[str] = []
        w = TraceWriter(fmt, out.append)
        w.start(self.config, self.header, self.setup)
        w.lines(self.lines)
        w.end(self.footer)
        return "".join(out)


class TraceWriter:
    """A trace rendered as it is made: :meth:`start` (the header and the set-up),
    :meth:`lines` (each call's lines, as the calls run), :meth:`end` (the summary),
    each handing its text to ``write``; :attr:`written` counts the lines written."""

    def __init__(self, fmt: str, write):
        self.md = fmt == "md"
        self._write = write
        self._last = ""                     # the last line written (a blank line before an op)
        self.written = 0

    def _put(self, out: list[str]) -> None:
        if out:
            self._write("\n".join(out) + "\n")
            self._last = out[-1]
            self.written += len(out)

    def start(self, config: str, header: list[str], setup: list[str]) -> None:
        if self.md:
            out = [f"# xensim trace: `{config}`", ""]
            out += [f"- {_md(h)}" for h in header[1:]] + [""]
            out += ["## Set-up (not traced)", ""] + [f"- {_md(s)}" for s in setup] + [""]
            out += ["## Operations", ""]
        else:
            out = list(header) + ["set-up (not traced):"] + [f"  {s}" for s in setup] + [""]
        self._put(out)

    def lines(self, lines: list[Line]) -> None:
        out: list[str] = []
        for ln in lines:
            last = out[-1] if out else self._last
            if self.md:
                if ln.kind == "op":
                    out += ([""] if last != "" else []) + [f"### {_md_plain(ln.text)}", ""]
                    continue
                depth = ln.depth + 1 if ln.kind == "result" else ln.depth     # under its call
                out.append("  " * max(depth - 1, 0) + "- " + _md(ln.text))
            else:
                if ln.kind == "op" and last != "":
                    out.append("")
                out.append("  " * ln.depth + ln.text)
        self._put(out)

    def end(self, footer: list[str]) -> None:
        if self.md:
            self._put(["", "## Summary", ""] + [f"- {_md(f)}" for f in footer])
        else:
            self._put([""] + list(footer))


def _md(text: str) -> str:
    """A trace line as Markdown: in a code span (its ``|``, ``*`` and ``_`` stay literal)."""
    return f"`{text}`" if "`" not in text else text


def _md_plain(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")
