"""A Ctrl-C stays a Ctrl-C: output.keep_interrupt and the places that report an exception
as a finding (a design's crash in ``run`` and ``trace``, a fuzz violation, an explore
violation).

numpy runs Python code (``_promote_fields``) while it compares structured arrays, and
replaces a KeyboardInterrupt raised there with a TypeError of its own. A signal that
arrives at that moment must still end the command as an interrupt (exit 130 / 143, the
partial result), not as a design crash or a violation with a reproducer.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from xensim.cli._main import main
from xensim.output import keep_interrupt, signals_held, stop_mark, stop_signals

DEFAULT = str(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")
CHURN = ("workload: {kind: churn, iterations: 5}\n"
         "domains: [{name: g, memory: 2MiB}]\n"
         "compare: [xen-4.1]\n")


def _turned_into_type_error(signum: int = signal.SIGINT):
    """What numpy does: the KeyboardInterrupt of a signal handled inside it leaves as a
    TypeError."""
    try:
        signal.raise_signal(signum)
    except KeyboardInterrupt:
        raise TypeError("Cannot compare structured arrays unless they have a common dtype.")


# -- keep_interrupt ------------------------------------------------------------------------
class TestKeepInterrupt:
    def test_nothing_came_it_returns(self):
        mark = stop_mark()
        assert keep_interrupt(mark) is None

    def test_a_handled_signal_since_the_mark_raises_keyboard_interrupt(self):
        with stop_signals():
            mark = stop_mark()
            with pytest.raises(KeyboardInterrupt) as e:
                try:
                    _turned_into_type_error()
                except TypeError:
                    keep_interrupt(mark)
        assert isinstance(e.value.__context__, TypeError)
        assert stop_mark() == mark + 1

    def test_a_signal_before_the_mark_does_not_count(self):
        with stop_signals():
            with pytest.raises(TypeError):
                _turned_into_type_error()
            mark = stop_mark()
            assert keep_interrupt(mark) is None

    def test_a_held_signal_counts(self):
        mark = stop_mark()
        with signals_held() as got:
            signal.raise_signal(signal.SIGTERM)
        assert got == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            keep_interrupt(mark)


# -- the commands ------------------------------------------------------------------------------
def _design_turns_the_interrupt_into_a_type_error(monkeypatch, signum=signal.SIGINT):
    from xensim.designs._xen41 import Xen41

    def boom(self, *a):
        _turned_into_type_error(signum)

    monkeypatch.setattr(Xen41, "get_superpage", boom)
    monkeypatch.setattr(Xen41, "get_superpages", lambda self, mfns, d, rw: 0)


def test_run_reports_the_interrupt_not_a_crash(capsys, tmp_path, monkeypatch):
    """sim.run_design: exit 130 and the interrupted line; no 'crashed'."""
    _design_turns_the_interrupt_into_a_type_error(monkeypatch)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CHURN)
    rc = main(["run", str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 130
    assert "crashed" not in out + err
    assert err.startswith("xensim: interrupted")


def test_trace_reports_the_interrupt_not_a_crash(capsys, tmp_path, monkeypatch):
    """sim.CrashWatch (trace): SIGTERM, exit 143; no 'crashed'."""
    _design_turns_the_interrupt_into_a_type_error(monkeypatch, signal.SIGTERM)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CHURN)
    rc = main(["trace", str(cfg), "--limit", "3"])
    out, err = capsys.readouterr()
    assert rc == 143
    assert "crashed" not in out + err


def test_fuzz_runner_raises_the_interrupt_not_a_crash_violation(monkeypatch):
    """fuzz.FuzzRunner (a Fuzzer's): the call's TypeError after a signal is no 'crash'
    violation."""
    from xensim.designs._xen41 import Xen41
    from xensim.fuzz import Fuzzer, Setup
    f = Fuzzer(Setup(design="xen-4.1"), "interrupt")
    f.start()
    g = f.live_guests()[0]
    mfn = g.kernel.superpage_mfns(0, 2)[1]
    monkeypatch.setattr(Xen41, "mark_superpage", lambda self, mfn, d: _turned_into_type_error())
    with stop_signals(), pytest.raises(KeyboardInterrupt):
        f.step({"op": "mmuext_op", "domain": g.name, "ops": [["mark_super", mfn]]})


def test_explore_raises_the_interrupt_not_a_violation():
    """explore's Execution: a CPU's TypeError after a signal goes to the scheduler as the
    interrupt, not into the execution's errors."""
    from xensim import Machine, MemoryMap
    from xensim.explore._explore import Execution

    def program(m, cpu):
        _turned_into_type_error()

    m = Machine(MemoryMap([(0, 64 << 20)], name="t"), "none", version="4.8")
    ex = Execution(lambda: m, [program], None)
    with stop_signals(), pytest.raises(KeyboardInterrupt):
        ex.run(lambda ex, enabled: enabled[0])
    assert ex.errors == []


# -- the grouping that met numpy's conversion in trace -------------------------------------------
def test_row_groups_first_appearance_order_exact():
    from xensim.teach._decode import row_groups
    rows = np.array([[3, 1], [2, 9], [3, 1], [0, 0], [2, 9], [3, 2]], dtype=np.uint64)
    groups = [(r.tolist(), at.tolist()) for r, at in row_groups(rows)]
    assert groups == [([3, 1], [0, 2]), ([2, 9], [1, 4]), ([0, 0], [3]), ([3, 2], [5])]
    assert row_groups(rows[:0]) == []


def test_trace_groups_frames_without_comparing_structured_arrays(capsys, monkeypatch):
    """The narrator's 512-frame lines and inspect's frame groups never reach numpy's
    structured comparison (where a Ctrl-C turns into a TypeError): with that comparison
    broken, both still run."""
    import numpy._core._internal as internal

    def no_structured(*a):
        raise AssertionError("a structured comparison")

    monkeypatch.setattr(internal, "_promote_fields", no_structured)
    rc = main(["trace", DEFAULT, "--limit", "40", "--level", "frame"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "get_pages_and_type(writable): 512 frames" in out
    rc = main(["inspect", DEFAULT, "--superpage", "db:0", "--steps", "40"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert ("  all 512 frames: count_info allocated, state inuse, count 1; type_info type none, "
            "count 0\n") in out
