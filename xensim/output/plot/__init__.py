"""Pictures (the plot extra): the memory map, superpage states, overhead
against RAM and the slow path against churn.
"""

from ._plot import (
    PLOT_HINT, FIGURES, PlotUnavailable, have_matplotlib, memmap_data, superpage_states,
    states_for_run, overhead_data, churn_data, fig_memmap, fig_superpages, fig_overhead,
    fig_churn, make_pictures, build_figure, figure_bytes,
)

__all__ = [
    "FIGURES", "PLOT_HINT", "PlotUnavailable", "build_figure", "churn_data", "fig_churn",
    "fig_memmap", "fig_overhead", "fig_superpages", "figure_bytes", "have_matplotlib",
    "make_pictures", "memmap_data", "overhead_data", "states_for_run", "superpage_states",
]
