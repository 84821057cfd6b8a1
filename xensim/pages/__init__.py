"""Pages to step through: a traced run's hypercalls (``xensim trace --html``), a race's
schedule as swimlanes (``xensim explore --html``), and the designs side by side at
one step (``--designs-at``). Each is one self-contained HTML file (inline style,
hand-written script, its data as JSON; no network, works from ``file://``), made from
the same events and decoders as the text trace and the explorer's trace.
"""

from ._designs import designs_at, designs_html
from ._race import RaceRun, race_html, record_race, write_race_page
from ._record import MAX_BYTES, MAX_STEPS, STEP_FIELDS, StepRecorder
from ._trace_page import TraceRun, record_trace, trace_html, write_trace_page

__all__ = [
    "MAX_BYTES", "MAX_STEPS", "RaceRun", "designs_at", "designs_html", "race_html",
    "record_race", "write_race_page", "STEP_FIELDS", "StepRecorder", "TraceRun", "record_trace",
    "trace_html", "write_trace_page",
]
