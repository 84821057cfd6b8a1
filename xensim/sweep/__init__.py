"""Sweeps: one comparison over a grid of configs (``xensim sweep``): the sweep file
and its points (_file), a point as an engine's task (_point), running the sweep with
resumption and its results (_run). Points run on an engine (``xensim.engines``):
local worker processes or a Dask cluster.
"""

from ._file import (Point, Sweep, SweepFile, describe_values, grid_cell, load_sweep,
                    parse_sweep)
from ._point import peak_rss_bytes, point_cost, point_id, point_task, reset_peak_rss, run_point
from ._run import (FIGURES, PointRun, SweepInterrupted, SweepResult, design_row, points_to_run,
                   run_sweep, write_parquet)

__all__ = ["FIGURES", "Point", "PointRun", "Sweep", "SweepFile", "SweepInterrupted",
           "SweepResult", "describe_values", "design_row", "grid_cell", "load_sweep",
           "parse_sweep", "peak_rss_bytes", "point_cost", "points_to_run", "point_id", "point_task",
           "reset_peak_rss", "run_point", "run_sweep", "write_parquet"]
