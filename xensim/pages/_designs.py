"""``--designs-at N``: the registered designs side by side at one moment of a run.

Step N of a trace page belongs to a workload operation; each design (a fresh
machine, the same set-up, the same seeded operations) is run up to and including
that operation, and the page shows, per design, the superpage the step touched: its
words as the design reads them (``words`` / ``word_text``), the 512 frames' two
counts (count_info's and type_info's), the bytes of refcount metadata the design
needs on the machine (``metadata_bytes``) and the atomic updates that one operation
made (each frame-word cmpxchg, each superpage-word cmpxchg or write). So the 2010
argument is on one screen: 8 B per 2 MiB against 8 B per 4 KiB, one cmpxchg
against 512 atomics.
"""

from __future__ import annotations

from collections import Counter

from .._errors import ConfigError
from ..config import Config
from ..designs import design_names
from ..mem import (PGC_count_mask, PGT_count_mask, PGT_TYPE_NAMES, PGT_type_shift,
                   SUPERPAGE_PAGES, MemoryMap, format_size)
from ..teach import replay
from ._record import STEP_FIELDS
from ._shell import esc


class _Atomics:
    """Counts the atomic updates of frame and superpage words (the machine's events)."""

    def __init__(self):
        self.n = 0

    def word(self, *a) -> None:
        self.n += 1

    def got(self, first, n, d, type, result) -> None:
        if result.ok:
            self.n += n * (1 if type is None else 2)

    def put(self, first, n, typed) -> None:
        self.n += n * (2 if typed else 1)

    def many(self, where, spdx, word, old, new) -> None:
        self.n += len(spdx)

    def cas(self, where, spdx, word, expected, found, new, won) -> None:
        self.n += 1

    def handlers(self) -> dict:
        return {"word_changed": self.word, "range_got": self.got, "range_put": self.put,
                "spage_cmpxchg": self.cas, "spage_write": self.word,
                "spage_write_many": self.many}


def _superpage_of(step: list, fields: tuple, fallback: int | None) -> int | None:
    """The superpage a step is about: the first superpage word it wrote, else its
    largest run of frames, else ``fallback``."""
    f = {k: i for i, k in enumerate(fields)}
    if step[f["S"]]:
        return step[f["S"]][0][0]
    runs = sorted(step[f["F"]], key=lambda r: -r[1])
    if runs:
        return runs[0][0] - runs[0][0] % SUPERPAGE_PAGES
    return fallback


def _counts(values: list[int]) -> str:
    """``512 x 2`` or ``500 x 1, 12 x 2``: how many frames hold each count."""
    return ", ".join(f"{k} x {v}" for v, k in sorted(Counter(values).items()))


def _one(cfg: Config, memmap: MemoryMap, design: str, op: int, base: int) -> dict:
    session = replay(cfg, memmap, design)
    m = session.machine
    atomics = _Atomics()
    subs: list = []
    seen = {}

    def before(i, o) -> None:
        if i == op:
            seen["op"] = str(o)
            seen["stats"] = dict(m.superpage.stats)
            subs.extend(m.events.subscribe(k, fn) for k, fn in atomics.handlers().items())

    result = "?"
    try:
        for st in session.steps(op + 1, before):
            if st.index == op:
                result = "ok" if st.ok else (st.refused or st.errno or "failed")
    finally:
        for s in subs:
            m.events.unsubscribe(s)
    stats = {k: v - seen.get("stats", {}).get(k, 0) for k, v in m.superpage.stats.items()}
    page = m.mfn_to_page(base)
    ci, ti, _ = m.frame_table.read_slices(page, SUPERPAGE_PAGES)
    cic = [int(c) & PGC_count_mask for c in ci.tolist()]
    tic = [int(t) & PGT_count_mask for t in ti.tolist()]
    types = Counter(PGT_TYPE_NAMES.get(int(t) >> PGT_type_shift, "?") for t in ti.tolist())
    words = m.superpage.words(base) or []
    ram = max(1, memmap.ram_bytes >> 21)
    meta = m.superpage.metadata_bytes()
    return {
        "name": design, "description": m.superpage.description, "op": seen.get("op", ""),
        "result": result,
        "words": [[name, m.superpage.word_text(i, v)] for i, (name, v) in enumerate(words)],
        "ci": cic, "ti": tic, "ciText": _counts(cic), "tiText": _counts(tic),
        "types": ", ".join(f"{n} {t}" for t, n in types.most_common()),
        "bytes": format_size(meta), "per2m": f"{meta / ram:.2f} B",
        "atomics": atomics.n,
        "paths": ", ".join(f"{k} +{v}" for k, v in stats.items() if v) or "none",
    }


def designs_at(cfg: Config, memmap: MemoryMap, run, n: int) -> dict:
    """Every registered design after the operation of step ``n`` (1-based) of ``run``
    (a :class:`~._trace_page.TraceRun`): see the module docstring."""
    rec = run.recorder
    if not rec.steps:
        raise ConfigError(None, "--designs-at", "the page has no step")
    if n > len(rec.steps):
        raise ConfigError(None, "--designs-at", f"step {n} is past the page's last step "
                                                f"({len(rec.steps):,})")
    step = rec.steps[n - 1]
    op = step[STEP_FIELDS.index("o")]
    base = _superpage_of(step, STEP_FIELDS, rec.superpage)
    if base is None:
        raise ConfigError(None, "--designs-at", f"step {n} touches no superpage (choose a step "
                                                "that maps one, or give --superpage MFN)")
    return {"step": n, "op": op, "superpage": base,
            "designs": [_one(cfg, memmap, d, op, base) for d in design_names()]}


def designs_html(d: dict) -> str:
    """The section's HTML (``designs.js`` draws each design's 512 frames)."""
    boxes = []
    for i, x in enumerate(d["designs"]):
        words = "".join(f"<tr><th>{esc(w)}</th><td>{esc(t)}</td></tr>" for w, t in x["words"])
        words = words or '<tr><td colspan="2" class="hint">no superpage word</td></tr>'
        boxes.append(
            f'<div class="design" data-design="{esc(x["name"])}"><h3>{esc(x["name"])}</h3>'
            f'<p class="hint">{esc(x["description"])}</p>'
            f'<table class="w">{words}'
            f'<tr><th>metadata</th><td>{esc(x["bytes"])} ({esc(x["per2m"])} per 2 MiB of RAM)</td></tr>'
            f'<tr><th>atomics</th><td class="atomics">{x["atomics"]:,} in this operation</td></tr>'
            f'<tr><th>paths</th><td>{esc(x["paths"])}</td></tr>'
            f'<tr><th>result</th><td>{esc(x["result"])}</td></tr></table>'
            f'<canvas width="512" height="128" data-i="{i}" title="the 512 frames, 32 a row: '
            f'count_info count above, type count below (darker: more)"></canvas>'
            f'<p class="hint">count_info counts: <span class="cic">{esc(x["ciText"])}</span>; '
            f'type counts: <span class="tic">{esc(x["tiText"])}</span> ({esc(x["types"])})</p></div>')
    op = d["designs"][0]["op"] if d["designs"] else ""
    return (f'<section id="designs"><h2>The designs side by side after step {d["step"]}</h2>'
            f'<p>Operation {d["op"] + 1} (<code>{esc(op)}</code>) run on each design, from the '
            f'same start; superpage mfn {d["superpage"]:#x}..{d["superpage"] + 511:#x}: its '
            "words, its 512 frames' counts, the metadata each design keeps and the atomic "
            "updates the operation made.</p>"
            f'<div class="designs">{"".join(boxes)}</div></section>')
