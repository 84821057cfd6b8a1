"""The picture of a sweep (``xensim plot --sweep DIR --x KEY``): a figure of the
comparison's ``metric`` against a grid key, one line per design through the mean of
the rows at each value, a band from their minimum to their maximum (the seeds'
spread), one panel per value of a ``facet`` key (docs/pictures.md, "A sweep").

It reads ``DIR/results.csv`` as ``xensim sweep`` writes it (one row per point and
design: ``point``, the grid keys, ``design``, then the figures). :func:`sweep_data`
needs no matplotlib; :func:`sweep_table` is the figure's data as a table of the one
renderer; :func:`fig_sweep` draws it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigError
from ..output import Column, Table
from ..designs import REGISTRY, design_color
from ._common import new_figure

__all__ = ["DEFAULT_METRIC", "HEADLINE", "SweepPoint", "SweepLine", "SweepPlot",
           "read_results", "results_table", "sweep_data", "sweep_table", "fig_sweep",
           "line_color"]

#: the figure drawn when none is named: slow-path transitions per operation
DEFAULT_METRIC = "slow_per_op"
#: the figures of a sweep's results table (in the HTML report), besides those drawn
HEADLINE = ("ops", "ops_failed", "slow_per_op", "ns_per_op", "audit")


#: the unit of a figure of results.csv that has one (the others are counts or ratios)
UNITS = {"ns_per_op": "ns", "modelled_ns": "ns", "metadata_bytes": "B",
         "metadata_percent": "% of RAM"}
#: each design's line in a sweep figure, by its place in the figure: marker, style and
#: marker size, so that a line drawn over another (the same values) leaves it showing
LINE_STYLES = (("o", "-", 9.0), ("s", "--", 6.5), ("^", "-.", 5.0), ("D", ":", 4.0),
               ("v", "-", 3.5), ("x", "--", 3.5))


def with_unit(metric: str) -> str:
    """``ns_per_op (ns)``; a figure without a unit as it is."""
    return f"{metric} ({UNITS[metric]})" if metric in UNITS else metric


def fmt_figure(text) -> str:
    """A results.csv cell as a table shows it: a float to 4 significant digits, an
    integer with thousands separators, anything else as written."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return str(text)
    if v.is_integer() and "." not in str(text) and "e" not in str(text).lower():
        return f"{int(v):,}"
    return f"{v:,.4g}"


def line_color(name: str) -> str | None:
    """A design's line colour: its colour in every picture (None: matplotlib's next one,
    for a design of the results that is not registered here)."""
    return design_color(name) if name in REGISTRY else None


@dataclass
class SweepPoint:
    """The rows of one design at one grid value (and facet value): their metric's
    mean, minimum, maximum and how many rows there were."""
    x: object
    mean: float
    lo: float
    hi: float
    n: int


@dataclass
class SweepLine:
    design: str
    #: the facet key's value of its panel (None: no facet)
    facet: object
    points: list[SweepPoint]


@dataclass
class SweepPlot:
    """What :func:`fig_sweep` draws."""
    source: str
    metric: str
    x: str
    facet: str | None
    x_values: list
    #: the facet key's values, in order ([None] without a facet)
    facets: list
    designs: list[str]
    lines: list[SweepLine]
    #: the grid keys whose values vary within a point of a line (``seed``, ...): the spread
    spread_over: list[str] = field(default_factory=list)
    #: rows whose metric is empty (a design that crashed at that point), left out
    missing: int = 0
    #: which Xen produced the rows (results.csv's release column: "Xen 4.8", ...)
    releases: list[str] = field(default_factory=list)

    def line(self, design: str, facet=None) -> SweepLine | None:
        return next((ln for ln in self.lines if ln.design == design and ln.facet == facet),
                    None)


def _value(text: str):
    """A CSV cell: an int, a float, or the text (``true``, ``sketch``)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_results(sweep_dir: str | Path) -> tuple[Path, list[str], list[str], list[dict]]:
    """(the results.csv path, its grid keys, its figures, its rows) of a sweep's
    directory. ConfigError when there is no results.csv or it is not a sweep's."""
    path = Path(sweep_dir) / "results.csv"
    if not path.is_file():
        raise ConfigError(None, "--sweep", f"{sweep_dir} has no results.csv (`xensim sweep "
                                           f"SWEEP.yaml --out {sweep_dir}` writes it)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = [dict(zip(header, r)) for r in reader if r]
    if header[:1] == ["table"]:                   # several tables' CSV: the results table
        header = header[1:]
    if "point" not in header or "design" not in header or \
            header.index("point") > header.index("design"):
        raise ConfigError(str(path), None, "not a sweep's results.csv: its header has no "
                                           "point ... design columns")
    i, j = header.index("point"), header.index("design")
    return path, header[i + 1:j], header[j + 1:], rows


def _check(path: Path, option: str, name: str, what: str, choices: list[str]) -> None:
    if name not in choices:
        raise ConfigError(str(path), option, f"no {what} {name!r}; the {what}s of this "
                                             f"sweep: {', '.join(choices) or 'none'}")


def _ordered(values: list) -> list:
    """Distinct values: numbers ascending, else in order of first appearance."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) for v in distinct):
        return sorted(distinct)
    return distinct


def sweep_data(sweep_dir: str | Path, x: str, facet: str | None = None,
               metric: str = DEFAULT_METRIC) -> SweepPlot:
    """The metric of a sweep's rows against grid key ``x``, per design, per value of
    ``facet``. ConfigError (naming the columns there are) for an unknown key or figure,
    a figure that is not a number, or ``facet`` equal to ``x``."""
    path, keys, figures, rows = read_results(sweep_dir)
    _check(path, "--x", x, "grid key", keys)
    if facet is not None:
        if facet == x:
            raise ConfigError(str(path), "--facet", f"{facet!r} is the x axis already; the "
                                                    f"other grid keys: "
                                                    f"{', '.join(k for k in keys if k != x) or 'none'}")
        _check(path, "--facet", facet, "grid key", keys)
    _check(path, "--metric", metric, "figure", figures)
    numeric = [f for f in figures
               if all(r.get(f, "") == "" or isinstance(_value(r[f]), (int, float)) for r in rows)]
    if metric not in numeric:
        raise ConfigError(str(path), "--metric", f"{metric!r} is not a number; the numeric "
                                                 f"figures of this sweep: {', '.join(numeric)}")
    cells = [{k: _value(r.get(k, "")) for k in keys} for r in rows]
    x_values = _ordered([c[x] for c in cells])
    facets = _ordered([c[facet] for c in cells]) if facet else [None]
    designs = list(dict.fromkeys(r["design"] for r in rows))
    groups: dict[tuple, list[float]] = {}
    rest = [k for k in keys if k not in (x, facet)]
    seen: dict[tuple, set] = {}
    missing = 0
    for r, c in zip(rows, cells):
        if r.get(metric, "") == "":
            missing += 1
            continue
        g = (r["design"], c[facet] if facet else None, c[x])
        groups.setdefault(g, []).append(float(r[metric]))
        for k in rest:
            seen.setdefault((g, k), set()).add(c[k])
    lines = []
    for fv in facets:
        for d in designs:
            pts = [SweepPoint(xv, math.fsum(v) / len(v), min(v), max(v), len(v))
                   for xv in x_values for v in [groups.get((d, fv, xv))] if v]
            if pts:
                lines.append(SweepLine(d, fv, pts))
    spread = [k for k in rest if any(len(s) > 1 for (g, kk), s in seen.items() if kk == k)]
    releases = list(dict.fromkeys(r["release"] for r in rows if r.get("release")))
    return SweepPlot(str(path), metric, x, facet, x_values, facets, designs, lines, spread,
                     missing, releases)


def results_table(sweep_dir: str | Path, metrics=()) -> Table:
    """A sweep's rows (results.csv) as a table: the point, the grid keys, the design,
    the :data:`HEADLINE` figures and ``metrics``, as many as the file has."""
    path, keys, figures, rows = read_results(sweep_dir)
    shown = [f for f in dict.fromkeys((*HEADLINE, *metrics)) if f in figures]
    text = {"point", "design", "audit"}
    cols = [Column(k, with_unit(k), fmt_figure, "<" if k in text or k in keys else ">")
            for k in ("point", *keys, "design", *shown)]
    return Table(f"Sweep {Path(sweep_dir)}: {len(rows)} rows (points x designs)", cols,
                 [{c.key: r.get(c.key) or None for c in cols} for r in rows])


def _label(v) -> str:
    return "-" if v is None else str(v)


def sweep_table(data: SweepPlot) -> Table:
    """The figure's data as a table: one row per facet value, design and grid value."""
    cols = ([Column("facet", data.facet, _label, "<")] if data.facet else []) + [
        Column("design", "design", align="<"),
        Column("x", data.x, _label, "<"),
        Column("n", "rows", lambda v: f"{v:,}"),
        Column("mean", f"{data.metric} (mean"
                       f"{', ' + UNITS[data.metric] if data.metric in UNITS else ''})", fmt_figure),
        Column("lo", "min", fmt_figure),
        Column("hi", "max", fmt_figure)]
    rows = [{"facet": ln.facet, "design": ln.design, "x": p.x, "n": p.n, "mean": p.mean,
             "lo": p.lo, "hi": p.hi} for ln in data.lines for p in ln.points]
    notes = []
    if data.spread_over:
        notes.append(f"min and max over {', '.join(data.spread_over)}")
    if data.missing:
        notes.append(f"{data.missing} row(s) without a {data.metric} (a design that crashed) "
                     f"left out")
    return Table(f"{data.metric} against {data.x}"
                 + (f", by {data.facet}" if data.facet else ""), cols, rows, notes)


def fig_sweep(data: SweepPlot):
    """One panel per facet value (side by side, the same y axis), one line per design
    through the means, its band from min to max where the rows differ."""
    n = len(data.facets)
    fig = new_figure(max(5.0, 4.2 * n), 4.0)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    numeric = all(isinstance(v, (int, float)) for v in data.x_values)
    pos = {v: (v if numeric else i) for i, v in enumerate(data.x_values)}
    for ax, fv in zip(axes, data.facets):
        for i, d in enumerate(data.designs):
            ln = data.line(d, fv)
            if ln is None:
                continue
            xs = [pos[p.x] for p in ln.points]
            marker, style, size = LINE_STYLES[i % len(LINE_STYLES)]
            (line,) = ax.plot(xs, [p.mean for p in ln.points], marker=marker, linestyle=style,
                              markersize=size, label=d, color=line_color(d))
            if any(p.hi > p.lo for p in ln.points):
                ax.fill_between(xs, [p.lo for p in ln.points], [p.hi for p in ln.points],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        if not numeric:
            ax.set_xticks(list(range(len(data.x_values))), [str(v) for v in data.x_values])
        ax.set_xlabel(data.x)
        if data.facet:
            ax.set_title(f"{data.facet} = {fv}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(with_unit(data.metric))
    axes[0].legend(fontsize="small")
    spread = f"; band: min-max over {', '.join(data.spread_over)}" if data.spread_over else ""
    made = "; ".join(data.releases) if data.releases else "Xen release not recorded"
    fig.suptitle(f"{data.metric} against {data.x}{spread}\n{made}", fontsize="medium")
    return fig
