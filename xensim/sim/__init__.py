"""Running configs: one run of a config on a design, comparison across designs,
the cost model, the memory overhead report and run reports.
"""

from ._costmodel import (
    FRAME_OPS, COUNT_UPDATES, Estimate, CostModel,
)
from ._crash import CrashWatch, DesignCrashed, crash_reason
from ._overhead import (
    FRAME_TABLE_ROWS, DesignCost, OverheadReport, overhead,
)
from ._report import (
    MachineReport, fmt_ns, comparison_tables, RunResult,
)
from ._session import (
    Counters, Step, Session, start, config_workload,
)
from ._simulate import (
    MAX_FAILURES_LISTED, AuditVerdict, DesignRun, Comparison, run_design, Interrupted,
    run_comparison,
)

__all__ = [
    "AuditVerdict", "COUNT_UPDATES", "Comparison", "CostModel", "CrashWatch", "DesignCrashed", "DesignCost", "DesignRun",
    "Estimate", "FRAME_OPS", "Interrupted", "MAX_FAILURES_LISTED", "MachineReport",
    "FRAME_TABLE_ROWS", "OverheadReport", "RunResult",
    "comparison_tables", "crash_reason", "fmt_ns", "overhead", "run_comparison", "run_design",
    "Counters", "Step", "Session", "start", "config_workload",
]
