"""A design (or xensim) that raises while running a workload: one crash report.

Every command that runs a workload reports a crash the same way: one line on
stderr, ``xensim: design NAME crashed: TYPE STAGE: MESSAGE`` (STAGE: ``in the
set-up``, ``at op N (OP)``, ``in the final audit`` ...), exit status 1. ``run``
reports each crashed design of its comparison with :class:`DesignCrashed`'s text;
``trace`` and ``inspect`` raise it from :class:`CrashWatch`.
"""

from __future__ import annotations

from .._errors import ConfigError
from ..output import keep_interrupt, stop_mark


def crash_reason(e: BaseException, stage: str) -> str:
    """``RuntimeError at op 3 (g: map superpage 0 at slot 0 rw): boom``."""
    return f"{type(e).__name__} {stage}: {e}"


class DesignCrashed(Exception):
    """A workload's run on ``design`` raised (a bug in the design or in xensim)."""

    def __init__(self, design: str, reason: str):
        super().__init__(design, reason)
        self.design = design
        self.reason = reason

    def __str__(self) -> str:
        return f"design {self.design} crashed: {self.reason}"


class CrashWatch:
    """``with CrashWatch(design) as w:`` around a session's set-up and steps (pass
    ``w.before`` to :meth:`Session.steps`): an exception other than a ConfigError or
    an interrupt leaves as :class:`DesignCrashed`, naming the stage it happened in (one
    raised after a Ctrl-C or SIGTERM came leaves as the KeyboardInterrupt it stands for)."""

    def __init__(self, design: str):
        self.design = design
        self.stage = "in the set-up"
        self._mark = stop_mark()

    def before(self, i: int, op) -> None:
        self.stage = f"at op {i + 1} ({op})"

    def __enter__(self) -> "CrashWatch":
        return self

    def __exit__(self, kind, e, tb) -> bool:
        if isinstance(e, Exception) and not isinstance(e, (ConfigError, DesignCrashed)):
            keep_interrupt(self._mark)
            raise DesignCrashed(self.design, crash_reason(e, self.stage)) from e
        return False
