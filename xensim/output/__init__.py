"""Output: one renderer (table, JSON, CSV, Markdown), atomic result files,
the progress bar and Ctrl-C handling.
"""

from ._interrupt import (
    EXIT_INTERRUPTED, EXIT_TERMINATED, exit_status_interrupted, keep_interrupt, sigint_deferred,
    signals_held, stop_mark, stop_signals,
)
from ._progress import (
    Progress, duration,
)
from ._render import (
    FORMATS, Column, Table, Result, csv_value, plural, to_json, render, fmt_int, fmt_hex,
    fmt_pct,
)
from ._results import (
    write_atomic, out_dir, check_dir, check_file, writing,
)

__all__ = [
    "Column", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "FORMATS", "Progress", "Result", "Table", "check_dir", "check_file",
    "csv_value", "duration", "fmt_hex", "fmt_int", "fmt_pct", "out_dir", "plural", "render",
    "keep_interrupt", "signals_held", "sigint_deferred", "stop_mark", "stop_signals", "exit_status_interrupted", "to_json", "write_atomic", "writing",
]
