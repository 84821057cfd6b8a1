"""Teaching: word decoding, the tracer that narrates each hypercall, and inspect.
"""

from ._inspect import (
    INSPECT_FORMATS, count_info_text, type_info_text, superpage_entry, entries_mapping, held_by,
    inspect_mfn, inspect_superpage, inspect_domain, resolve_superpage, resolve_domain, inspect,
)
from ._trace import (
    LEVELS, TRACE_FORMATS, pick_design, pte_flags, format_pte, ci_change, ti_change,
    frames_text, spage_word_text, spage_word_name, spage_words, entry_get_text, entry_put_text,
    Tracer, TraceResult, trace,
)

__all__ = [
    "INSPECT_FORMATS", "LEVELS", "TRACE_FORMATS", "TraceResult", "Tracer", "ci_change",
    "count_info_text", "entries_mapping", "entry_get_text", "entry_put_text", "format_pte",
    "frames_text", "held_by", "inspect", "inspect_domain", "inspect_mfn", "inspect_superpage",
    "pick_design", "pte_flags", "resolve_domain", "resolve_superpage", "spage_word_name",
    "spage_word_text", "spage_words", "superpage_entry", "ti_change", "trace", "type_info_text",
]
