"""A user's designs: a design defined outside the package, in a file written
here or registered directly, runs through every command that takes a design with no
change to the package; a broken design file is one exact line and exit 2; design_files:
in configs and scenarios; the xensim.designs entry points; the lock-bit example under
the explorer."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import xensim
from xensim import ConfigError
from xensim.cli import main
from xensim.designs import REGISTRY, design_file_of, design_names
from xensim.designs import _loading

ROOT = Path(__file__).resolve().parents[2]
LOCK_BIT = ROOT / "examples" / "designs" / "lock_bit.py"
LOCK_SCENARIO = ROOT / "examples" / "designs" / "two-cpus-map-unmap.yaml"
BUILT_IN = ("per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch", "none")

#: a design of the user's: xen-4.1's algorithm on the counting core, one count word
HALF = '''
import xensim


class Base(xensim.TableCounted):
    """No name of its own: a base to build on, not a design."""


class HalfCount(Base):
    name = "half-count"
    description = "a user's counted design"
    word_names = ("uses",)

    @classmethod
    def word_text(cls, word, value):
        return f"uses={int(value)}"
'''


@pytest.fixture(autouse=True)
def registry():
    """Every test leaves the registry, the loaded files and the entry points as it found them."""
    saved = (dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN),
             dict(_loading._ENTRY_POINTS))
    modules = set(sys.modules)
    yield
    REGISTRY.clear()
    REGISTRY.update(saved[0])
    for state, old in zip((_loading._FILES, _loading._ORIGIN, _loading._ENTRY_POINTS), saved[1:]):
        state.clear()
        state.update(old)
    for name in set(sys.modules) - modules:
        if name.startswith("xensim_design_") or name.startswith("ep_designs"):
            del sys.modules[name]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def churn_config(tmp_path: Path, design: str, files: str = "") -> Path:
    return write(tmp_path, "churn.yaml", f"""\
        {files}compare: [{design}]
        workload: {{kind: churn, iterations: 3}}
        """)


# -- load_design_file ---------------------------------------------------------------------
def test_a_file_registers_the_designs_it_defines(tmp_path):
    path = write(tmp_path, "half.py", HALF)
    assert xensim.load_design_file(path) == ("half-count",)
    assert design_names() == BUILT_IN + ("half-count",)
    cls = xensim.design_class("half-count")
    assert cls.__name__ == "HalfCount" and "Base" not in [c.__name__ for c in REGISTRY.values()]
    assert design_file_of("half-count") == str(path.resolve()) and design_file_of("xen-4.1") is None
    assert sys.modules[cls.__module__].__file__ == str(path.resolve())
    # the same resolved file again is a no-op: the same class, nothing new
    again = tmp_path / "sub" / ("." * 2) / "half.py"
    (tmp_path / "sub").mkdir()
    assert xensim.load_design_files([again, path]) == ("half-count", "half-count")
    assert xensim.design_class("half-count") is cls and len(REGISTRY) == len(BUILT_IN) + 1


def test_imported_designs_are_not_registered_again(tmp_path):
    path = write(tmp_path, "reexport.py", """\
        from xensim import Xen41, SuperpageInfo

        class Mine(Xen41):
            name = "mine"
        """)
    assert xensim.load_design_file(path) == ("mine",)
    assert REGISTRY["xen-4.1"] is xensim.Xen41 and REGISTRY["mine"].__bases__ == (xensim.Xen41,)


def test_a_design_registered_directly_runs(capsys, tmp_path):
    class Direct(xensim.TableCounted):
        name = "direct"
        description = "registered by xensim.register"
    xensim.register(Direct)
    rc, out, err = cli(capsys, "run", churn_config(tmp_path, "direct"), "--format", "json")
    assert (rc, err) == (0, "")
    run = json.loads(out)["comparison"]["designs"][0]
    assert (run["design"], run["status"], run["description"]) == ("direct", "ok",
                                                                  "registered by xensim.register")
    assert run["superpage"] == {"slow_get": 3, "slow_put": 3, "fast_get": 0, "fast_put": 0}
    assert design_file_of("direct") is None
    with pytest.raises(ValueError, match=r"^design class Other: the name 'direct' is taken by "):
        xensim.register(type("Other", (xensim.TableCounted,), {"name": "direct"}))


BROKEN = [
    ("nope.py", None, "{p}: no such file"),
    ("notes.txt", "x = 1\n", "{p}: not a Python file (a design file's name ends in .py)"),
    ("syntax.py", "import xensim\n\nclass A(xensim.Xen41:\n    pass\n",
     "{p}:3: syntax error: invalid syntax"),
    ("boom.py", "import xensim\n\n\nraise RuntimeError('no licence')\n",
     "{p}:4: importing it raised RuntimeError: no licence"),
    ("missing.py", "import xensim_does_not_exist\n",
     "{p}:1: importing it raised ModuleNotFoundError: No module named 'xensim_does_not_exist'"),
    ("nothing.py", "from xensim import Xen41\nX = 1\n",
     "{p}: defines no design (a subclass of xensim.SuperpageDesign with a name of its own)"),
    ("builtin.py", "import xensim\n\n\nclass Mine(xensim.TableCounted):\n    name = 'xen-4.1'\n",
     "{p}:4: design 'xen-4.1' (class Mine): the name is taken by the built-in design Xen41"),
    ("twice.py", "import xensim\nclass A(xensim.TableCounted):\n    name = 'two'\n"
                 "class B(xensim.TableCounted):\n    name = 'two'\n",
     "{p}:4: design 'two' (class B): the name is taken by class A of the same file"),
    ("badname.py", "import xensim\nclass A(xensim.TableCounted):\n    name = 3\n",
     "{p}:2: design class A: name must be a non-empty string without spaces, got 3"),
    ("spaces.py", "import xensim\nclass A(xensim.TableCounted):\n    name = 'lock bit'\n",
     "{p}:2: design class A: name must be a non-empty string without spaces, got 'lock bit'"),
    ("words.py", "import xensim\nclass A(xensim.TableCounted):\n    name = 'w'\n"
                 "    words_per_entry = -1\n",
     "{p}:2: design class A: words_per_entry must be 1 or 2 (64-bit words of its "
     "superpage-table entry), got -1"),
    ("flag.py", "import xensim\nclass A(xensim.TableCounted):\n    name = 'f'\n    buggy = 'no'\n",
     "{p}:2: design class A: buggy must be True or False, got 'no'"),
    ("abstract.py", "import xensim\nclass A(xensim.SuperpageDesign):\n    name = 'a'\n"
                    "    def get_superpage(self, mfn, d, rw):\n        return 0\n",
     "{p}:2: design class A: does not define put_superpage, expect (a design defines "
     "get_superpage, put_superpage, expect; see docs/designs/writing-a-design.md)"),
]


@pytest.mark.parametrize("name,text,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_file_is_one_line_and_registers_nothing(capsys, tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    before, modules = dict(REGISTRY), set(sys.modules)
    with pytest.raises(ConfigError) as e:
        xensim.load_design_file(path)
    assert str(e.value) == expected.format(p=path)
    assert REGISTRY == before and not [m for m in set(sys.modules) - modules
                                       if m.startswith("xensim_design_")]
    # on the command line: the same line after --design-file, exit 2, nothing on stdout
    rc, out, err = cli(capsys, "overhead", "--design-file", path)
    assert (rc, out, err) == (2, "", f"xensim: error: --design-file: {expected.format(p=path)}\n")


def test_all_or_nothing(tmp_path):
    """A file with a good design, a bad one, and one that registers itself: nothing stays."""
    path = write(tmp_path, "mixed.py", """\
        import xensim

        @xensim.register
        class Early(xensim.TableCounted):
            name = "early"

        class Good(xensim.TableCounted):
            name = "good"

        class Bad(xensim.TableCounted):
            name = "bad"
            words_per_entry = 3
        """)
    with pytest.raises(ConfigError, match=r"mixed\.py:10: design class Bad: words_per_entry"):
        xensim.load_design_file(path)
    assert design_names() == BUILT_IN
    # fixed, the file loads: the three, in the file's order
    path.write_text(path.read_text().replace("words_per_entry = 3", "words_per_entry = 2"))
    assert xensim.load_design_file(path) == ("early", "good", "bad")


def test_a_name_taken_by_another_files_design(tmp_path):
    first = write(tmp_path, "first.py", HALF)
    second = write(tmp_path, "second.py", HALF.replace("class HalfCount", "class Again"))
    xensim.load_design_file(first)
    with pytest.raises(ConfigError) as e:
        xensim.load_design_file(second)
    assert str(e.value) == (f"{second}:9: design 'half-count' (class Again): the name is "
                            f"taken by design HalfCount of {first.resolve()}")


# -- design_files: in configs and scenarios ----------------------------------------------
def test_config_design_files_relative_to_the_config(capsys, tmp_path):
    (tmp_path / "designs").mkdir()
    write(tmp_path / "designs", "half.py", HALF)
    cfg_path = churn_config(tmp_path, "half-count", "design_files: [designs/half.py]\n        ")
    cfg = xensim.load_config(cfg_path)
    assert cfg.design_files == [str((tmp_path / "designs" / "half.py").resolve())]
    assert cfg.compare == ["half-count"]
    out_dir = tmp_path / "out"
    rc, out, err = cli(capsys, "run", cfg_path, "--out", out_dir, "--format", "json")
    assert (rc, err) == (0, "")
    written = (out_dir / "config.yaml").read_text()
    assert f"design_files: [{tmp_path.resolve() / 'designs' / 'half.py'}]" in written
    again = xensim.load_config(out_dir / "config.yaml")            # absolute: runs from anywhere
    assert again.design_files == cfg.design_files


def test_config_design_files_errors_name_the_key(capsys, tmp_path):
    write(tmp_path, "half.py", HALF)
    write(tmp_path, "bad.py", "x = (\n")
    cfg = write(tmp_path, "c.yaml", """\
        design_files:
          - half.py
          - bad.py
        compare: [half-count]
        """)
    rc, out, err = cli(capsys, "run", cfg)
    assert (rc, out) == (2, "")
    assert err == (f"xensim: error: {cfg}:3: design_files[1]: {tmp_path / 'bad.py'}:1: syntax "
                   f"error: '(' was never closed\n")
    assert "half-count" not in design_names() or design_file_of("half-count")  # half.py loaded
    with pytest.raises(ConfigError) as e:
        xensim.parse_config("design_files: half.py\n", "c.yaml")
    assert str(e.value) == "c.yaml:1: design_files: expected a list, got 'half.py'"
    with pytest.raises(ConfigError) as e:
        xensim.parse_config("compare: [half-counts]\n", "c.yaml")
    assert str(e.value).startswith("c.yaml:1: compare[0]: unknown design 'half-counts'; "
                                   "choose from: per-mapping, ")


def test_scenario_design_files(tmp_path):
    from xensim.explore import load_scenario
    sc = load_scenario(LOCK_SCENARIO)
    assert (sc.design, sc.design_files) == ("lock-bit", [str(LOCK_BIT)])
    bad = write(tmp_path, "s.yaml", "design_files: [nope.py]\ncpus: [[{op: map, domain: a}]]\n")
    with pytest.raises(ConfigError) as e:
        load_scenario(bad)
    assert str(e.value) == f"{bad}:1: design_files[0]: {tmp_path / 'nope.py'}: no such file"


# -- every command that takes a design ---------------------------------------------------
def test_run(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "run", churn_config(tmp_path, "half-count"), "--design-file", path,
                       "--format", "json")
    assert (rc, err) == (0, "")
    run = json.loads(out)["comparison"]["designs"][0]
    assert (run["design"], run["status"]) == ("half-count", "ok")
    assert run["superpage"] == {"slow_get": 3, "slow_put": 3, "fast_get": 0, "fast_put": 0}
    # 3 x 512 frames each way, and 6 temporary get_page / put_page on the L2 table (xen-4.1's
    # figures: the same algorithm)
    assert run["refcount"] == {"get_page": 1542, "put_page": 1542, "get_page_type": 1536,
                               "put_page_type": 1536}


def test_trace_shows_its_words(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "trace", churn_config(tmp_path, "half-count"), "--design-file",
                       path, "--limit", "2")
    assert (rc, err) == (0, "")
    lines = [ln.strip() for ln in out.splitlines()]
    assert "design half-count: a user's counted design" in lines
    assert "superpage mfn 0x200 uses: uses=0 -> uses=1" in lines
    assert "superpage mfn 0x200 uses: uses=1 -> uses=0" in lines


def test_inspect_shows_its_words(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "inspect", churn_config(tmp_path, "half-count"), "--design-file",
                       path, "--superpage", "guest:0", "--steps", "1")
    assert (rc, err) == (0, "")
    assert "  half-count: uses uses=1" in out.splitlines()


def test_overhead_has_its_row(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "overhead", "--design-file", path, "--format", "json")
    assert (rc, err) == (0, "")
    rows = {r["name"]: r for r in json.loads(out)["designs"]}
    assert rows["half-count"]["bytes"] == 12_288 == rows["sparse-8B"]["bytes"]
    assert rows["half-count"]["description"] == "a user's counted design"


def test_designs_lists_it_with_its_file(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "designs", "--design-file", path, "--format", "json")
    assert (rc, err) == (0, "")
    got = json.loads(out)["designs"]
    assert [d["name"] for d in got] == list(BUILT_IN) + ["half-count"]
    half = got[-1]
    assert (half["file"], half["doc"], half["default"]) == (str(path.resolve()), "", False)
    assert all(d["file"] == "" for d in got[:-1])
    rc, out, _ = cli(capsys, "designs", "--design-file", path)
    assert out.splitlines()[-1].split()[0] == "half-count" and str(path.resolve()) in out


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = write(tmp_path, "half.py", HALF)
    out_dir = tmp_path / "plots"
    rc, out, err = cli(capsys, "plot", churn_config(tmp_path, "half-count"), "--design-file", path,
                       "--which", "superpages", "--out", out_dir)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [str(out_dir / "superpages.png"), str(out_dir / "superpages.svg")]
    assert (out_dir / "superpages.png").stat().st_size > 0


def test_explore(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    sc = write(tmp_path, "s.yaml", (ROOT / "scenarios" / "map-map.yaml").read_text()
               .replace("design: superpage-info", "design: half-count"))
    rc, out, err = cli(capsys, "explore", sc, "--design-file", path, "--preemption-bound", "1")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == ("scenario s (two CPUs map the same unmapped superpage) on half-count, "
                        "scheduler dfs, preemption bound 1")
    assert lines[1].startswith("schedules explored: 4, steps: 8,240, ")
    assert lines[2] == "violations: 0"


def test_fuzz_and_its_reproducers_carry_the_file(capsys, tmp_path):
    path = write(tmp_path, "half.py", HALF)
    rc, out, err = cli(capsys, "fuzz", "--design-file", path, "--design", "half-count",
                       "--calls", "150", "--quiet")
    assert (rc, err) == (0, "")
    assert out.splitlines()[0] == ("xensim fuzz: design half-count, Xen 4.8, 3 domains, seed 0, "
                                   "audit incremental (full every 1,000 checks)")
    from xensim.fuzz import Setup, load_script, to_script_yaml
    setup = Setup(design="half-count", design_files=(str(path.resolve()),))
    text = to_script_yaml(setup, [])
    assert f"design_files:\n- {path.resolve()}\n" in text
    REGISTRY.pop("half-count")                                 # a fresh process: not loaded
    _loading._FILES.clear()
    loaded, ops = load_script(text)
    assert loaded == setup and ops == [] and "half-count" in design_names()


# -- the entry points ---------------------------------------------------------------------
def entry_points(tmp_path: Path, monkeypatch, lines: str) -> None:
    dist = tmp_path / "ep_designs-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-designs\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[xensim.designs]\n{lines}")
    (tmp_path / "ep_designs.py").write_text(HALF.replace("half-count", "ep-half") + textwrap.dedent('''
        class Solo(xensim.Xen41):
            name = "ep-solo"
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    _loading._ENTRY_POINTS.update(loaded=False, error=None)


def test_entry_points_load_lazily(tmp_path, monkeypatch):
    entry_points(tmp_path, monkeypatch, "half = ep_designs\n")
    assert "ep-half" not in REGISTRY
    assert design_names() == BUILT_IN + ("ep-half", "ep-solo")
    assert design_file_of("ep-half") is None


def test_an_entry_point_naming_a_class(tmp_path, monkeypatch):
    entry_points(tmp_path, monkeypatch, "solo = ep_designs:Solo\n")
    assert xensim.design_class("ep-solo").__name__ == "Solo"
    assert design_names() == BUILT_IN + ("ep-solo",)


@pytest.mark.parametrize("value,message", [
    ("ep_designs:Nope", "loading it raised AttributeError: module 'ep_designs' has no "
                        "attribute 'Nope'"),
    ("ep_designs:Base", "class Base has no name of its own"),
    ("ep_designs:xensim.__version__", "names neither a module nor a subclass of xensim.SuperpageDesign"),
    ("textwrap", "its module defines no design (a subclass of xensim.SuperpageDesign with a "
                 "name of its own)"),
])
def test_a_broken_entry_point_is_one_line(capsys, tmp_path, monkeypatch, value, message):
    entry_points(tmp_path, monkeypatch, f"broken = {value}\n")
    expected = f"entry point 'broken' (xensim.designs: {value}): {message}"
    with pytest.raises(ConfigError) as e:
        design_names()
    assert str(e.value) == expected
    rc, out, err = cli(capsys, "run", churn_config(tmp_path, "xen-4.1"))
    assert (rc, out, err) == (2, "", f"xensim: error: {expected}\n")


# -- the lock-bit example under the explorer ------------------------------------------------
def test_lock_bit_has_no_race_within_bound_1():
    from xensim.explore import explore, load_scenario
    res = explore(load_scenario(LOCK_SCENARIO), "lock-bit", preemption_bound=1)
    assert (res.schedules, res.steps, res.violations, res.complete) == (7, 24_744, 0, True)


def test_lock_bit_without_its_lock_check_races(tmp_path):
    """The explorer sees the design's races: ignore the lock bit on the acquire path and a
    mapping's increment lands on a locked word (the design's word_problem, checked after
    every step, says so; without that check the lost increment underflows later)."""
    from xensim.explore import explore, load_scenario
    text = LOCK_BIT.read_text().replace('"lock-bit"', '"lock-bit-broken"')
    check = "            if x & LOCK:\n                self._wait(mfn, word, x)\n                continue\n"
    assert text.count(check) == 2
    text = text.replace(check, "", 1).replace("if x == COUNT:", "if x & COUNT == COUNT:")
    xensim.load_design_file(write(tmp_path, "broken.py", text))
    res = explore(load_scenario(LOCK_SCENARIO), "lock-bit-broken", preemption_bound=1)
    assert (res.schedules, res.violations) == (2, 1)
    assert res.first.message == ("cpu1 sp_cas superpage 0x0 word 0: lock bit set over a count "
                                 "(1): the count was not published (0x8000000000000001)")


def test_a_subclass_of_a_built_in_inherits_no_docs_page_or_description(tmp_path):
    """``xensim designs``: a user's design on Xen41 names its own file, not
    docs/designs/xen-4.1.md, and no description it did not write; one that writes them
    shows them."""
    from xensim.designs import catalog
    path = tmp_path / "mine.py"
    path.write_text("import xensim\n\nclass Mine(xensim.Xen41):\n    name = 'mine'\n\n\n"
                    "class Told(xensim.Xen41):\n    name = 'told'\n    description = 'mine, told'\n"
                    "    doc = 'told.md'\n")
    xensim.load_design_file(path)
    info = {d.name: d for d in catalog().designs}
    assert (info["mine"].doc, info["mine"].description) == ("", "")
    assert (info["told"].doc, info["told"].description) == ("told.md", "mine, told")
    assert info["xen-4.1"].doc == "docs/designs/xen-4.1.md"
    row = next(r for r in catalog().tables()[0].rows if r["name"] == "mine")
    assert (row["doc"], row["description"]) == (str(path.resolve()), "-")
    assert [c.header for c in catalog().tables()[0].columns].count("") == 0
