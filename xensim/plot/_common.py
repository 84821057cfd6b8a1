"""What every picture shares: matplotlib, loaded on first use (:class:`PlotUnavailable`
without it), a new figure on the Agg canvas, the designs' colours, the byte axis, and
saving a figure (PNG / SVG, atomically).

matplotlib is an optional extra (``pip install -e '.[plot]'``): it is imported
inside the functions that draw, never at module import, and drawing without it
raises :class:`PlotUnavailable` (a :class:`~xensim._errors.ConfigError`, so the
CLI prints ``xensim: error: plotting needs matplotlib: ...`` and exits 2).
Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas: no
pyplot, no global backend state, nothing to close.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._errors import ConfigError

PLOT_HINT = "plotting needs matplotlib: pip install -e '.[plot]'"

#: the figures ``xensim plot --which`` can draw, in drawing order
FIGURES = ("memmap", "superpages", "overhead", "churn")



class PlotUnavailable(ConfigError):
    """matplotlib is not installed: one line for the CLI (``xensim: error: ...``, exit 2)."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(None, None, PLOT_HINT)
        self.detail = detail


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (without importing the rest of it)."""
    try:
        load_matplotlib()
    except PlotUnavailable:
        return False
    return True


def load_matplotlib():
    """matplotlib's Figure and Agg canvas, imported on first use."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailable(str(e)) from None
    return matplotlib, Figure, FigureCanvasAgg


def new_figure(w: float, h: float):
    _, Figure, FigureCanvasAgg = load_matplotlib()
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def human(nbytes: float) -> str:
    """A byte count for an axis: 0, 4 KiB, 512 MiB, 1.5 GiB, 16 TiB."""
    if nbytes <= 0:
        return "0"
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{int(nbytes)} B"


def addr_formatter(span: int):
    """Tick labels for a byte axis: 0, 512 MiB, 1 GiB, 1.5 GiB ..."""
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda x, _pos: human(x))


def addr_locator(span: int):
    """Ticks at multiples of a power-of-two byte size, 4 to 10 of them."""
    from matplotlib.ticker import MultipleLocator
    step = 1 << max(12, (max(span, 1) // 8).bit_length() - 1)
    while span / step > 10:
        step <<= 1
    return MultipleLocator(step)


def runs_of(values: np.ndarray, keys: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of consecutive ``keys`` (sorted ints) with equal ``values``: (first, last+1, value)."""
    if keys.size == 0:
        return []
    brk = np.flatnonzero((np.diff(keys) != 1) | (np.diff(values) != 0)) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [keys.size]))
    return [(int(keys[s]), int(keys[e - 1]) + 1, int(values[s])) for s, e in zip(starts, ends)]


def bar(ax, y, spans, h=0.6, **kw):
    """Horizontal bars at row ``y`` for (start, end) spans."""
    if spans:
        ax.broken_barh([(s, e - s) for s, e in spans], (y - h / 2, h), **kw)


def colormap(name: str):
    """A copy of matplotlib's colour map ``name`` (free to resample and change)."""
    import matplotlib
    return matplotlib.colormaps[name].copy()


# ==========================================================================
# Saving
# ==========================================================================


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure encoded as ``png`` or ``svg``."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    return buf.getvalue()


def save_figure(fig, out: Path, stem: str, formats=("png", "svg")) -> list[Path]:
    """Write ``out/stem.png`` (and ``.svg``) atomically; -> the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        data = figure_bytes(fig, fmt)
        tmp = out / f".{stem}.{fmt}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
        paths.append(path)
    return paths


def release_text(version: str, designs) -> str:
    """Which Xen produced a figure: "Xen 4.8"; on a release without PV superpages, the
    superpage designs drawn are hypothetical and the text names them."""
    from ..designs import design_class
    from ..xen import Release
    release = Release.parse(version)
    if release.pv_superpages:
        return f"Xen {release}"
    hypothetical = [d for d in designs if design_class(d).supports_pse]
    return f"Xen {release}" + (f" ({', '.join(hypothetical)} hypothetical: as if merged into "
                               f"today's Xen)" if hypothetical else "")
