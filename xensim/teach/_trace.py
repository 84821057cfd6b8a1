"""``xensim trace``: narrate every hypercall of a (small) run of a config's workload.

The run is the one ``xensim run`` makes for one design (the first of the config's
``compare`` list, or ``--design``; see :mod:`._replay`): a fresh machine, the same
set-up (not traced: domains created, populated, page-table trees built), then the
workload's operations, each through the guest kernel's hypercalls. For every
hypercall the trace prints the call with its arguments decoded, what Xen did, and
the result:

``--level hypercall``
    one line per call (each request of a batch on a line of its own) and its
    result (``-> 0``, ``-> EINVAL``, ``-> 1`` extent done, ...);
``--level superpage`` (the default)
    + each page-table entry validated or dropped (``get_superpage``,
    ``get_page_and_type`` ...), each superpage word before -> after, decoded per
    design (``none/0 -> dynamic/1``), and whether the design took the slow path
    (the 512 frames' references taken or dropped) or the fast path (a count);
``--level frame``
    + every change of a frame's ``count_info`` / ``type_info``, with the
    primitive that made it (``get_page``, ``put_page_type``, ...). A 512-frame
    range operation is one line (``512 frames mfn 0x200..0x3ff count_info +1
    (...)``), as are frames that each went through the same steps (a balloon
    giving 512 frames back one by one); ``--all-frames`` lists every frame.

How the tracer sees the machine is in :mod:`._tracer`; how a call's events become
lines in :mod:`._narrate`; the text and Markdown renderings in :mod:`._format`.
"""

from __future__ import annotations

from ..config import Config
from ..guest import GuestError, GuestKernel
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES, MemoryMap, format_size
from ..xen import Machine, audit
from ._tree import Line
from ..sim import CrashWatch, DesignCrashed
from ._format import TraceResult, TraceWriter
from ._replay import pick_design, replay
from ._tracer import Tracer


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'s' if k != 1 else ''}"


def _setup_lines(m: Machine, kernels: dict[str, GuestKernel]) -> list[str]:
    out = []
    for name, k in kernels.items():
        d = m.domain(k.domid)
        n = k.pt_base // SUPERPAGE_PAGES
        mfns = []
        for i in range(n):
            try:
                mfns.append(k.mfn(i * SUPERPAGE_PAGES))
            except GuestError:
                break
        if mfns and all(b - a == SUPERPAGE_PAGES for a, b in zip(mfns, mfns[1:])):
            where = f"mfn {mfns[0]:#x}" + (f"..{mfns[-1]:#x} (step 0x200)" if len(mfns) > 1 else "")
        else:
            where = "mfn " + ", ".join(f"{x:#x}" for x in mfns[:8]) + (" ..." if len(mfns) > 8 else "")
        which = "superpage 0" if len(mfns) == 1 else f"superpages 0..{len(mfns) - 1}"
        out.append(f"dom{k.domid} {name}: {format_size(len(mfns) * SUPERPAGE_PAGES << PAGE_SHIFT)}"
                   f" = {which} at {where}; tot_pages {d.tot_pages}")
        tables = [f"L4 mfn {k.root:#x} (pinned, base pointer)"]
        for (level, _), mfn in sorted(k.tables.items(), key=lambda t: (-t[0][0], t[0][1])):
            tables.append(f"L{level} mfn {mfn:#x}")
        out.append(f"dom{k.domid} page tables: " + ", ".join(tables))
    return out


def trace(cfg: Config, memmap: MemoryMap, design: str | None = None, level: str = "superpage",
          all_frames: bool = False, limit: int | None = None,
          writer: TraceWriter | None = None, recorder=None) -> TraceResult:
    """Run the config's workload on ``design`` and narrate its hypercalls.

    With a ``writer``, the trace is written as it is made (the header, then each
    operation's lines as soon as it has run, then the summary) and the result keeps
    no lines. A crash (:class:`~xensim.sim.DesignCrashed`) is in the summary, as
    ``crashed: ...``, and in the result's :attr:`~TraceResult.crash`.

    A ``recorder`` sees the same run as the text: ``recorder.start(machine, kernels)`` once set up,
    ``recorder.op(index, text)`` before each
    operation, ``recorder.call(call, rc, lines)`` after each hypercall (its event tree and
    its lines, at ``level``), ``recorder.refused(text)`` for an operation the guest kernel
    refused, ``recorder.stop()`` at the end; the run stops early once ``recorder.full``."""
    with CrashWatch(pick_design(cfg, design)):
        session = replay(cfg, memmap, design)
    name, m, kernels, wl = session.design, session.machine, session.kernels, session.workload
    tracer = Tracer(m, level, all_frames)
    header = [f"xensim trace of {cfg.source or '<config>'}",
              f"design {name}: {m.superpage.description}",
              f"{m.release_label}{' (faithful)' if m.faithful else ''}"
              f"{f', preempt {m.preempt}' if m.preempt.mode != 'never' else ''}, machine {memmap.name} "
              f"({format_size(memmap.ram_bytes)} of RAM), pdx {m.pdx.mode}",
              f"workload {wl.cfg.kind}: {wl.total} operations"
              + (f", tracing the first {limit}" if limit is not None and limit < wl.total else "")
              + f"; level {level}" + (", every frame" if all_frames else "")]
    setup = _setup_lines(m, kernels)
    config = str(cfg.source or "<config>")
    if writer is not None:
        writer.start(config, header, setup)
    kept: list[Line] = []
    failed = n = 0
    crash = None
    watch = CrashWatch(name)

    def flush() -> None:
        if writer is not None:
            writer.lines(tracer.lines)
        else:
            kept.extend(tracer.lines)
        tracer.lines.clear()

    def before(i, op):
        nonlocal n
        flush()
        watch.before(i, op)
        n += 1
        tracer.lines.append(Line(0, f"op {i + 1}: {op}", "op"))
        if recorder is not None:
            recorder.op(i, str(op))

    if recorder is not None:
        recorder.start(m, kernels)
        tracer.call_listeners.append(recorder.call)
    tracer.install()
    try:
        with watch:
            for step in session.steps(limit, before):
                if step.refused is not None:
                    text = f"refused by the guest kernel (no hypercall): {step.refused}"
                    tracer.lines.append(Line(1, text, "note"))
                    if recorder is not None:
                        recorder.refused(text)
                if not step.ok:
                    failed += 1
                if recorder is not None and recorder.full:
                    break
    except DesignCrashed as e:              # a bug: shown, not hidden
        crash = e
    finally:
        tracer.uninstall()
        if recorder is not None:
            recorder.stop()
        flush()
    preempted = f", {tracer.preempted} preempted and continued" if tracer.preempted else ""
    footer = [f"{_n(n, 'operation')} ({failed} failed), {_n(tracer.calls, 'hypercall')} "
              f"({tracer.errors} returned an error{preempted}), {tracer.flushes} TLB "
              f"flush{'es' if tracer.flushes != 1 else ''}"]
    if crash:
        footer.append(f"crashed: {crash.reason}")
    else:
        rep = audit(m)
        footer.append("audit: clean" if rep.ok else
                      f"audit: {rep.total_differences} difference(s), first: {rep.differences[0]}")
    if tracer.untraced:
        footer.append(f"untraced changes: {tracer.untraced} (a change no event explains: a bug)")
    if writer is not None:
        writer.end(footer)
    return TraceResult(config, name, level, header, setup, kept, footer, tracer.untraced,
                       tracer.calls, crash)
