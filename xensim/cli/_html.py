"""``xensim run --html FILE``: the run as one self-contained HTML page (and
``xensim plot --sweep DIR --html FILE``: a sweep's, :func:`write_sweep_html`).

One file, no external resource: the CSS is inline, the pictures are inline
base64 PNGs (``data:`` URIs), and there is no link to fetch anything. The tables
are the run's own :class:`~xensim.output.Table` objects (``result.tables()``, the
terminal tables), rendered from the same formatted cells, so the page and the
terminal always show the same numbers. The pictures (docs/pictures.md) need the
``plot`` extra; without matplotlib the page says so in a note and has everything
else. The file is written atomically (:func:`~xensim.output.write_atomic`).

The CLI calls it from ``cmd_run`` after the result is built::

    if args.html:
        write_html(result, args.html, cfg, memmap)
"""

from __future__ import annotations

import base64
import html
import sys
from pathlib import Path

from .. import __version__
from ..config import Config
from ..mem import MemoryMap
from ..output import Table, to_json
from ..output import write_atomic

PLOT_INSTALL = "pip install -e '.[plot]'"

#: the pictures of a report, in order (the superpage states only when the run simulates)
REPORT_PICTURES = ("memmap", "superpages", "overhead", "churn")

CAPTIONS = {
    "memmap": "The memory map: e820 ranges by type, the RAM frames and the holes between them, "
              "the PDX groups with RAM (where a frame table exists) and, when PDX compression "
              "applies, where it puts each RAM range in the compressed index space.",
    "superpages": "The superpage metadata of each design at one point of this run (the same "
                  "operations on every design; the run is replayed up to that point): state "
                  "along the address axis, and the counts of the superpages around the guests' "
                  "memory.",
    "overhead": "Bytes of refcount metadata of each design against RAM size, log-log: presets "
                "and synthetic PC machines, this machine starred; the 0.2% and 0.0004% of RAM "
                "lines of the 2010 thread.",
    "churn": "Slow-path (0->1, 1->0) transitions per operation against churn, per design, "
             "with and without MARK_SUPER.",
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       margin: 2em auto; max-width: 1320px; padding: 0 1em; color: #212121; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
h3 { font-size: 1.02em; margin: 1.2em 0 .4em; }
.meta { color: #616161; margin-top: 0; }
nav a { margin-right: 1em; }
table.xs { border-collapse: collapse; font-size: .9em; margin-bottom: .4em; }
table.xs th, table.xs td { border: 1px solid #e0e0e0; padding: .25em .45em; white-space: nowrap; }
table.xs th { background: #f5f5f5; white-space: normal; vertical-align: bottom; }
/* a cell of several words (e.g. "EOPNOTSUPP:18 EINVAL:2") wraps rather than widen the table */
table.xs td.txt.long { white-space: normal; min-width: 8em; }
table.xs td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.xs td.txt { text-align: left; }
table.xs tr:nth-child(even) td { background: #fafafa; }
ul.notes { color: #555; font-size: .88em; margin-top: .2em; }
.scroll { overflow-x: auto; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; margin-top: .3em; }
.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: .6em 1em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .82em; }
"""

# Counts the pictures the browser decoded (for headless checks: data-images-decoded).
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-decoded", String(ok.length));
  // tables wider than the page (their .scroll box scrolls): their ids, for headless checks
  var wide = Array.prototype.slice.call(document.querySelectorAll("div.scroll"))
    .filter(function (d) { return d.scrollWidth > d.clientWidth + 1; })
    .map(function (d) { return d.parentNode.id; });
  document.body.setAttribute("data-overflowing", wide.join(" "));
});
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(p for p in out.split("-") if p)[:60] or "table"


def _cell_class(c, v: str) -> str:
    if c.align == ">":
        return "num"
    return "txt long" if " " in v and len(v) > 16 else "txt"


def table_html(t: Table) -> str:
    """One :class:`Table` as HTML: its title, header, the formatted cells (``Table.cells``,
    as in the terminal) and its notes."""
    head = "".join(f"<th>{_e(c.header)}</th>" for c in t.columns)
    thead = f"<thead><tr>{head}</tr></thead>" if any(c.header for c in t.columns) else ""
    body = []
    for row in t.cells():
        tds = "".join(f'<td class="{_cell_class(c, v)}">{_e(v)}</td>'
                      for c, v in zip(t.columns, row))
        body.append(f"<tr>{tds}</tr>")
    notes = ("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in t.notes) + "</ul>"
             if t.notes else "")
    return (f'<div class="table" id="t-{_slug(t.title)}"><h3>{_e(t.title)}</h3>'
            f'<div class="scroll"><table class="xs">{thead}'
            f'<tbody>{"".join(body)}</tbody></table></div>{notes}</div>')


def _picture_html(name: str, png: bytes, alt: str, caption: str | None = None) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = CAPTIONS.get(name, "") if caption is None else caption
    return (f'<figure id="fig-{_slug(name)}"><img alt="{_e(alt)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>')


def _page(title: str, meta: str, body: list[str]) -> str:
    """A self-contained page: the style, the title, its meta line, the body, the script."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{meta}</p>',
        *body,
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ])


def _pictures(result, cfg: Config | None, memmap: MemoryMap | None, names, at) -> list[str]:
    """The pictures' HTML, or notes saying why there are none."""
    from ..plot import build_figure, figure_bytes, have_matplotlib
    if not have_matplotlib():
        return ['<p class="note">Pictures need the plot extra (matplotlib): '
                f"<code>{_e(PLOT_INSTALL)}</code></p>"]
    machine = result.machine.machine
    memmap = memmap or machine.memmap
    if cfg is None:
        from ..config import default_config
        cfg = default_config()
        cfg.machine.pdx = machine.pdx.requested
    out = []
    for name in names:
        if name == "superpages" and result.comparison is None:
            continue                            # nothing ran: no superpage state to show
        try:
            fig = build_figure(name, cfg, memmap, at)
            png = figure_bytes(fig, "png")
        except Exception as e:                  # noqa: BLE001  a picture failing must not lose the run
            print(f"xensim: warning: picture {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            out.append(f'<p class="note">The {name} picture could not be drawn: '
                       f'{_e(type(e).__name__)}: {_e(e)}</p>')
            continue
        out.append(_picture_html(name, png, f"{name} picture of {memmap.name}"))
    return out


def html_report(result, cfg: Config | None = None, memmap: MemoryMap | None = None, *,
                pictures=REPORT_PICTURES, at: str | int = "peak") -> str:
    """The report's HTML text (see :func:`write_html`)."""
    machine = result.machine.machine
    name = machine.memmap.name
    tables = result.tables()
    details = result.machine.tables()[1:]       # the memory map's ranges and its holes
    designs = ""
    if result.comparison is not None:
        items = "".join(f"<li><b>{_e(r.design)}</b>: {_e(r.description or r.reason or '')}</li>"
                        for r in result.comparison.runs)
        designs = f"<h3>The designs</h3><ul>{items}</ul>"
    source = cfg.source if cfg is not None and cfg.source else "the built-in default config"
    meta = (f"config: {_e(source)}; machine: {_e(name)}"
            + (f" ({_e(machine.memmap.source)})" if machine.memmap.source else "")
            + f"; xensim {_e(__version__)}")
    parts = [
        '<nav><a href="#tables">Tables</a><a href="#machine">The machine</a>'
        '<a href="#pictures">Pictures</a><a href="#json">JSON</a></nav>',
        '<section id="tables"><h2>Tables</h2>',
        *[table_html(t) for t in tables],
        designs,
        "</section>",
        '<section id="machine"><h2>The machine</h2>',
        *[table_html(t) for t in details],
        "</section>",
        '<section id="pictures"><h2>Pictures</h2>',
        *(_pictures(result, cfg, memmap, pictures, at) if pictures else
          ['<p class="note">No pictures were asked for.</p>']),
        "</section>",
        '<section id="json"><h2>JSON</h2><details><summary>results.json '
        "(as <code>xensim run --format json</code>)</summary>",
        f"<pre>{_e(to_json(result))}</pre></details></section>",
    ]
    return _page(f"xensim run on {name}", meta, [p for p in parts if p is not None])


def write_html(result, path, cfg: Config | None = None, memmap: MemoryMap | None = None, *,
               pictures=REPORT_PICTURES, at: str | int = "peak") -> Path:
    """Write the run ``result`` (a :class:`~xensim._report.RunResult`) as one self-contained
    HTML file at ``path``, atomically; -> the path.

    ``cfg`` and ``memmap`` are the run's config and memory map (as ``cmd_run`` has them):
    the superpage picture replays the config's workload, the others draw the machine
    with the config's PDX mode. ``pictures``: which of REPORT_PICTURES to draw (none:
    an empty tuple); ``at``: the point of the run of the superpage picture (``"peak"``,
    ``"end"`` or an operation count).
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html_report(result, cfg, memmap, pictures=pictures, at=at))
    return path


def sweep_html_report(sweep_dir, results: Table, figures: list[tuple[Table, bytes]]) -> str:
    """A sweep's report: one section per figure (its PNG inline, then its data as a
    table), then the sweep's rows (``results``)."""
    body = ['<nav><a href="#figures">Figures</a><a href="#results">Results</a></nav>',
            '<section id="figures"><h2>Figures</h2>']
    for t, png in figures:
        body += [_picture_html(f"sweep-{t.title}", png, t.title,
                               f"{t.title}: one line per design through the mean of its rows "
                               "at each value, the band from their minimum to their maximum"
                               + (f" ({t.notes[0]})" if t.notes else "") + "."),
                 table_html(t)]
    body += ["</section>", '<section id="results"><h2>Results</h2>', table_html(results),
             "</section>"]
    return _page(f"xensim sweep {Path(sweep_dir).name}",
                 f"results: {_e(Path(sweep_dir) / 'results.csv')}; xensim {_e(__version__)}",
                 body)


def write_sweep_html(path, sweep_dir, results: Table, figures: list[tuple[Table, bytes]]) -> Path:
    """Write a sweep's report (:func:`sweep_html_report`) at ``path``, atomically."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, sweep_html_report(sweep_dir, results, figures))
    return path


def add_html_argument(run_parser) -> None:
    """``--html FILE`` on ``xensim run``."""
    run_parser.add_argument("--html", metavar="FILE",
                            help="also write the run as one self-contained HTML page (tables, "
                                 "and pictures with the plot extra)")


__all__ = ["write_html", "html_report", "table_html", "add_html_argument", "REPORT_PICTURES",
           "sweep_html_report", "write_sweep_html"]
