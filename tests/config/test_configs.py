"""Every config in configs/ (not configs/machines) runs, and gives the outcome its comment states.

Each config states its expected outcome in prose and in ``# expect:`` lines, which
this file checks one by one::

    # expect: DESIGN PATH OP VALUE                    e.g. xen-4.1 superpage.slow_get == 2
    # expect: DESIGN PATH OP [FACTOR *] DESIGN PATH   e.g. per-mapping model.ns > 150 * xen-4.1 model.ns

DESIGN is a design of the config's comparison (``*``: every one), PATH a dotted path
into that design's entry of results.json (``comparison.designs[]``), OP one of
== != < <= > >=, VALUE a YAML scalar or mapping (``true``, ``512``, ``{}``).
"""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
import yaml

from xensim.config import build_memory_map, load_config
from xensim.sim._simulate import run_comparison

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL = sorted(p.name for p in CONFIGS.glob("*.yaml"))
#: the fuzzer-format replays (a script of hypercalls: `xensim run` replays them with every check)
REPLAYS = [n for n in ALL if "\n  ops:\n" in (CONFIGS / n).read_text()]
NAMES = [n for n in ALL if n not in REPLAYS]
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def expectations(path: Path) -> list[str]:
    return [line[len("# expect:"):].strip() for line in path.read_text().splitlines()
            if line.startswith("# expect:")]


def value_at(entry: dict, path: str):
    for part in path.split("."):
        entry = entry[part]
    return entry


def check(designs: dict[str, dict], expect: str) -> None:
    words = expect.split()
    design, path, op, rest = words[0], words[1], words[2], words[3:]
    assert op in OPS, f"bad operator in '# expect: {expect}'"
    if rest[0] in designs:                                   # DESIGN PATH
        want = value_at(designs[rest[0]], rest[1])
    elif len(rest) == 4 and rest[1] == "*":                  # FACTOR * DESIGN PATH
        want = float(rest[0]) * value_at(designs[rest[2]], rest[3])
    else:                                                    # a YAML value
        want = yaml.safe_load(" ".join(rest))
    for name in (designs if design == "*" else [design]):
        got = value_at(designs[name], path)
        assert OPS[op](got, want), f"{name}: {path} is {got!r}, expected {op} {want!r} " \
                                   f"('# expect: {expect}')"


def run(cfg):
    return {r["design"]: r for r in run_comparison(cfg, build_memory_map(cfg)).to_dict()["designs"]}


def test_the_configs_are_there():
    assert NAMES == ["default.yaml", "gnr-metadata.yaml", "preempt-pin.yaml", "sketch-race.yaml",
                     "split-driver.yaml", "when-pinning-pays.yaml", "why-per-mapping-was-slow.yaml"]
    assert REPLAYS == ["xsa-224.yaml", "xsa-234.yaml"]        # tests/fuzz/test_xtf.py


#: configs too big for the test suite (configs/scale/): loaded and checked here, run by
#: benchmarks/bench_scale.py
SCALE = sorted((CONFIGS / "scale").glob("*.yaml"))


@pytest.mark.parametrize("path", SCALE, ids=lambda p: p.name)
def test_scale_configs_load_and_say_what_they_need(path):
    """A config of configs/scale/ loads, simulates, states its outcome in '# expect:' lines
    and says what it needs (memory and time) in its comment; the suite does not run it."""
    cfg = load_config(path)
    assert cfg.simulates and expectations(path)
    text = path.read_text()
    assert "What it needs:" in text and "GiB of RAM" in text
    designs = {cfg.hypervisor.superpage}
    for want in expectations(path):
        assert want.split()[0] in designs | {"*"}, want


def test_the_scale_configs_are_there():
    assert [p.name for p in SCALE] == ["whole-host.yaml"]


@pytest.mark.parametrize("name", NAMES)
def test_config_gives_the_outcome_its_comment_states(name):
    path = CONFIGS / name
    cfg = load_config(path)
    assert cfg.simulates, f"{name} runs no simulation"
    wants = expectations(path)
    assert wants, f"{name} states no '# expect:' line"
    designs = run(cfg)
    assert all(r["status"] == "ok" for r in designs.values()), designs
    for want in wants:
        check(designs, want)


def test_when_pinning_pays_without_the_mark():
    """The comment's second outcome: with mark: false, xen-4.1 churns on the slow path."""
    cfg = load_config(CONFIGS / "when-pinning-pays.yaml")
    cfg.workload.mark = False
    cfg.compare = ["xen-4.1"]
    x = run(cfg)["xen-4.1"]
    assert x["ops"] == 400 and x["slow_transitions"] == 400 and x["slow_per_op"] == 1.0
    assert x["fast_updates"] == 0 and x["refcount"]["get_page_type"] == 512 * 200


def test_the_checker_checks():
    designs = {"a": {"x": {"y": 2}, "z": 4}, "b": {"x": {"y": 3}, "z": 4}}
    check(designs, "a x.y == 2")
    check(designs, "* z == b z")
    check(designs, "b x.y > 1.4 * a x.y")
    check(designs, "a x == {y: 2}")
    with pytest.raises(AssertionError, match="a: x.y is 2, expected > 2"):
        check(designs, "a x.y > 2")
    with pytest.raises(AssertionError, match="bad operator"):
        check(designs, "a x.y = 2")
