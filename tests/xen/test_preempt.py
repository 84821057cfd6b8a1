"""The preemption source (hypercall_preempt_check's answer) and the hypervisor.preempt key."""

import pytest

from xensim.xen import Preemption, parse_preemption


def test_never_is_the_default_and_never_asked():
    p = parse_preemption("never")
    assert p == Preemption() and p.pending is None and str(p) == "never"


def test_every_n_answers_true_at_each_nth_check():
    p = parse_preemption("every 3")
    check = p.pending
    assert [check() for _ in range(7)] == [False, False, True, False, False, True, False]
    assert (p.checks, p.preemptions, str(p)) == (7, 2, "every 3")


def test_random_is_repeatable_from_its_seed():
    a, b = parse_preemption("random 0.5 seed 7"), parse_preemption("random 0.5 seed 7")
    assert [a.pending() for _ in range(50)] == [b.pending() for _ in range(50)]
    assert 0 < a.preemptions < 50
    state = a.capture()
    first = [a.pending() for _ in range(10)]
    a.restore(state)
    assert [a.pending() for _ in range(10)] == first


@pytest.mark.parametrize("text, problem", [
    ("sometimes", "write never, every N, or random P [seed S]"),
    ("every", "write never"),
    ("every 0", "every N needs N >= 1, got 0"),
    ("random 2", "random P needs 0 <= P <= 1, got 2.0"),
    ("random 0.1 seed", "write never"),
])
def test_bad_values_are_refused_with_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_preemption(text)


def test_config_key_reaches_the_machine_and_a_bad_value_is_one_line(tmp_path):
    import subprocess
    import sys
    from xensim.config import parse_config
    from xensim.xen import Machine
    from xensim.config import build_memory_map
    cfg = parse_config('hypervisor:\n  preempt: "every 16"\n', "c.yaml")
    m = Machine.from_config(cfg, build_memory_map(cfg))
    assert str(m.preempt) == "every 16"
    bad = tmp_path / "bad.yaml"
    bad.write_text('hypervisor:\n  preempt: "every zero"\n')
    r = subprocess.run([sys.executable, "-m", "xensim", "run", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"xensim: error: {bad}:2: hypervisor.preempt: 'every zero': "
        "write never, every N, or random P [seed S]"]
