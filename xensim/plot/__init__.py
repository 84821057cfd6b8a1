"""Pictures (the plot extra): the memory map, superpage states, overhead against RAM,
the slow path against churn, and a sweep's figures (docs/pictures.md). ``xensim plot``
is xensim.cli._plot.

Each figure has a *data function* that needs no matplotlib (the tests check those with
exact values) and a *figure function* that draws it, in a module of its own:

==============  ======================  ==============================================
``memmap``      :func:`memmap_data`     the sparse memory map: e820 ranges by type,
                                        RAM frames and holes, PDX groups with RAM, and
                                        the PDX-compressed view when compression applies
``superpages``  :func:`states_for_run`  the superpage metadata's state (none / dynamic
                                        / mark, and counts) per design, along the
                                        address axis, at one point of a config's run
``overhead``    :func:`overhead_data`   bytes of each refcount design against RAM size
                                        (log-log), presets and synthetic machines
``churn``       :func:`churn_data`      slow-path transitions per operation against
                                        churn, per design, with and without MARK_SUPER
``--sweep``     :func:`sweep_data`      a sweep's figure (results.csv) against a grid
                                        key, per design, the seeds' spread, facets
==============  ======================  ==============================================

matplotlib is imported inside the functions that draw, never at module import
(_common.py).
"""

from ._common import (
    PLOT_HINT, FIGURES, PlotUnavailable, have_matplotlib,
    load_matplotlib, figure_bytes, save_figure,
)
from ._memmap import MemmapData, memmap_data, fig_memmap
from ._superpages import (
    SuperpageStates, RunStates, superpage_states, superpage_activity, busy_superpages,
    states_for_run, fig_superpages,
)
from ._overhead import (
    FRAME_TABLE_STYLE, SYNTHETIC_SIZES, OverheadData, overhead_styles, synthetic_memmap,
    overhead_data, fig_overhead,
)
from ._churn import ChurnMix, ChurnData, churn_data, churn_machine, fig_churn
from ._pictures import build_figure, make_pictures
from ._sweep import (
    DEFAULT_METRIC, HEADLINE, SweepLine, SweepPlot, SweepPoint, fig_sweep, line_color,
    read_results, results_table, sweep_data, sweep_table,
)

__all__ = [
    "ChurnData", "ChurnMix", "DEFAULT_METRIC", "FIGURES", "FRAME_TABLE_STYLE", "HEADLINE",
    "MemmapData", "OverheadData", "PLOT_HINT", "PlotUnavailable", "RunStates", "SYNTHETIC_SIZES",
    "SuperpageStates", "SweepLine", "SweepPlot", "SweepPoint", "build_figure", "busy_superpages",
    "churn_data", "churn_machine", "fig_churn", "fig_memmap", "fig_overhead", "fig_superpages",
    "fig_sweep", "figure_bytes", "have_matplotlib", "line_color", "load_matplotlib",
    "make_pictures", "memmap_data", "overhead_data", "overhead_styles", "read_results",
    "results_table", "save_figure", "states_for_run", "superpage_activity", "superpage_states",
    "sweep_data", "sweep_table", "synthetic_memmap",
]
