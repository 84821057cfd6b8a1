"""Teaching: word decoding, the tracer that narrates each hypercall, and inspect.

:func:`trace` runs a config's workload on one design and narrates every hypercall
(a :class:`TraceResult`, rendered as text or Markdown); a :class:`Tracer` can be
installed on any machine by hand. :func:`inspect` runs the workload and looks at
one frame, superpage or domain (``inspect_mfn`` / ``inspect_superpage`` /
``inspect_domain`` on a machine of your own). The decoders (``count_info_text``,
``type_info_text``, ``spage_words`` ...) are what both print.
"""

from ._decode import (
    count_info_text, type_info_text, ci_change, ti_change, frames_text, pte_flags, format_pte,
    spage_word_text, spage_word_name, spage_words,
)
from ._format import TRACE_FORMATS, TraceResult, TraceWriter
from ._inspect import (
    INSPECT_FORMATS, inspect, inspect_domain, inspect_mfn, inspect_superpage, render_inspection,
    resolve_superpage,
)
from ._narrate import LEVELS
from ._replay import load, pick_design, replay
from ._trace import trace
from ._tracer import Tracer

__all__ = [
    "INSPECT_FORMATS", "LEVELS", "TRACE_FORMATS", "TraceResult", "TraceWriter", "Tracer", "ci_change",
    "count_info_text", "format_pte", "frames_text", "inspect", "inspect_domain", "inspect_mfn",
    "inspect_superpage", "load", "pick_design", "pte_flags", "render_inspection", "replay", "resolve_superpage",
    "spage_word_name", "spage_word_text", "spage_words", "ti_change", "trace", "type_info_text",
]
