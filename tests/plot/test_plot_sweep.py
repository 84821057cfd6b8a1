"""The picture of a sweep (xensim.plot's sweep_data / fig_sweep, ``xensim plot
--sweep DIR --x KEY [--facet KEY] [--metric NAME] [--html FILE]``), against a
results.csv written here: the lines drawn and their points (mean, min, max over the
seeds), the bands, the facets, the table, the HTML report, and the one-line errors."""

from __future__ import annotations

import pytest

from xensim.cli._main import main
from xensim.output import render
from xensim.designs import design_color
from xensim.plot import (SweepPoint, fig_sweep, results_table,
                                sweep_data, sweep_table)

HEADER = ("point,workload.iterations,workload.mark,seed,design,status,ops,slow_per_op,"
          "ns_per_op,audit")
#: (iterations, mark, seed) -> (xen-4.1's slow_per_op, sketch's): sketch crashed at one point
VALUES = {
    (20, "false", 0): (1.0, 1.0), (20, "false", 1): (0.5, 1.0),
    (60, "false", 0): (0.25, 1.0), (60, "false", 1): (0.75, 1.0),
    (20, "true", 0): (0.0, 0.9), (20, "true", 1): (0.0, 0.7),
    (60, "true", 0): (0.0, 0.8), (60, "true", 1): (0.0, None),
}


@pytest.fixture
def sweep_dir(tmp_path):
    lines = [HEADER]
    for k, ((it, mark, seed), rates) in enumerate(VALUES.items()):
        for design, rate in zip(("xen-4.1", "sketch"), rates):
            status, cell = ("ok", rate) if rate is not None else ("crashed", "")
            lines.append(f"p{k},{it},{mark},{seed},{design},{status},{it * 2},{cell},"
                         f"{100 + it},{'clean' if rate is not None else 'crashed'}")
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def points(data, design, facet=None):
    return data.line(design, facet).points


# ---------------------------------------------------------------------------------------
# the data
# ---------------------------------------------------------------------------------------

def test_lines_points_and_spread_by_facet(sweep_dir):
    d = sweep_data(sweep_dir, "workload.iterations", facet="workload.mark")
    assert (d.metric, d.x, d.facet) == ("slow_per_op", "workload.iterations", "workload.mark")
    assert d.x_values == [20, 60] and d.facets == ["false", "true"]
    assert d.designs == ["xen-4.1", "sketch"] and d.spread_over == ["seed"]
    assert [(ln.facet, ln.design) for ln in d.lines] == [
        ("false", "xen-4.1"), ("false", "sketch"), ("true", "xen-4.1"), ("true", "sketch")]
    assert points(d, "xen-4.1", "false") == [SweepPoint(20, 0.75, 0.5, 1.0, 2),
                                             SweepPoint(60, 0.5, 0.25, 0.75, 2)]
    assert points(d, "sketch", "false") == [SweepPoint(20, 1.0, 1.0, 1.0, 2),
                                            SweepPoint(60, 1.0, 1.0, 1.0, 2)]
    assert points(d, "xen-4.1", "true") == [SweepPoint(20, 0.0, 0.0, 0.0, 2),
                                            SweepPoint(60, 0.0, 0.0, 0.0, 2)]
    # the crashed row (an empty cell) is left out and counted
    assert points(d, "sketch", "true") == [SweepPoint(20, 0.8, 0.7, 0.9, 2),
                                           SweepPoint(60, 0.8, 0.8, 0.8, 1)]
    assert d.missing == 1


def test_without_a_facet_the_spread_is_over_every_other_key(sweep_dir):
    d = sweep_data(sweep_dir, "workload.iterations", metric="ns_per_op")
    assert d.facets == [None] and d.spread_over == ["workload.mark", "seed"]
    assert points(d, "xen-4.1") == [SweepPoint(20, 120.0, 120.0, 120.0, 4),
                                    SweepPoint(60, 160.0, 160.0, 160.0, 4)]
    assert d.missing == 0


def test_a_text_key_keeps_the_grid_order(sweep_dir):
    d = sweep_data(sweep_dir, "workload.mark", facet="workload.iterations", metric="ops")
    assert d.x_values == ["false", "true"] and d.facets == [20, 60]
    assert points(d, "sketch", 60) == [SweepPoint("false", 120.0, 120.0, 120.0, 2),
                                       SweepPoint("true", 120.0, 120.0, 120.0, 2)]


def test_the_figures_table(sweep_dir):
    t = sweep_table(sweep_data(sweep_dir, "workload.iterations", facet="workload.mark"))
    assert t.title == "slow_per_op against workload.iterations, by workload.mark"
    assert [c.header for c in t.columns] == ["workload.mark", "design", "workload.iterations",
                                             "rows", "slow_per_op (mean)", "min", "max"]
    assert t.cells()[:2] == [["false", "xen-4.1", "20", "2", "0.75", "0.5", "1"],
                             ["false", "xen-4.1", "60", "2", "0.5", "0.25", "0.75"]]
    assert t.cells()[-1] == ["true", "sketch", "60", "1", "0.8", "0.8", "0.8"]
    assert t.notes == ["min and max over seed",
                       "1 row(s) without a slow_per_op (a design that crashed) left out"]
    assert render(t_result(t), "csv").splitlines()[1] == "false,xen-4.1,20,2,0.75,0.5,1.0"


def t_result(t):
    class R:
        def tables(self):
            return [t]

        def to_dict(self):
            return {}
    return R()


def test_the_results_table(sweep_dir):
    t = results_table(sweep_dir, ["ns_per_op"])
    assert [c.key for c in t.columns] == ["point", "workload.iterations", "workload.mark",
                                          "seed", "design", "ops", "slow_per_op", "ns_per_op",
                                          "audit"]
    assert len(t.rows) == 16 and t.cells()[15] == ["p7", "60", "true", "1", "sketch", "120",
                                                   "-", "160", "crashed"]


# ---------------------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------------------

def test_the_figure_draws_a_line_per_design_and_panel_with_its_band(sweep_dir):
    pytest.importorskip("matplotlib")
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_hex
    fig = fig_sweep(sweep_data(sweep_dir, "workload.iterations", facet="workload.mark"))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["workload.mark = false", "workload.mark = true"]
    assert fig._suptitle.get_text() == ("slow_per_op against workload.iterations; band: "
                                        "min-max over seed\nXen release not recorded")
    drawn = [[(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata()), to_hex(ln.get_color()))
              for ln in ax.get_lines()] for ax in axes]
    assert drawn == [
        [("xen-4.1", [20, 60], [0.75, 0.5], design_color("xen-4.1")),
         ("sketch", [20, 60], [1.0, 1.0], design_color("sketch"))],
        [("xen-4.1", [20, 60], [0.0, 0.0], design_color("xen-4.1")),
         ("sketch", [20, 60], [0.8, 0.8], design_color("sketch"))]]
    # a band only where the seeds differ: xen-4.1 without the mark, sketch with it
    bands = [[p for p in ax.collections if isinstance(p, PolyCollection)] for ax in axes]
    assert [len(b) for b in bands] == [1, 1]
    assert to_hex(bands[0][0].get_facecolor()[0], keep_alpha=False) == design_color("xen-4.1")
    assert to_hex(bands[1][0].get_facecolor()[0], keep_alpha=False) == design_color("sketch")
    ys = sorted({round(float(y), 6) for y in bands[0][0].get_paths()[0].vertices[:, 1]})
    assert ys == [0.25, 0.5, 0.75, 1.0]               # from min to max at 20 and 60
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["xen-4.1", "sketch"]


def test_a_text_key_is_drawn_at_positions_with_its_labels(sweep_dir):
    pytest.importorskip("matplotlib")
    fig = fig_sweep(sweep_data(sweep_dir, "workload.mark", metric="ops"))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["false", "true"]
    assert [list(ln.get_xdata()) for ln in ax.get_lines()] == [[0, 1], [0, 1]]


# ---------------------------------------------------------------------------------------
# the command and its errors
# ---------------------------------------------------------------------------------------

def test_cli_writes_the_figures_and_the_html_report(sweep_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, page = tmp_path / "pics", tmp_path / "report.html"
    assert main(["plot", "--sweep", str(sweep_dir), "--x", "workload.iterations", "--facet",
                 "workload.mark", "--metric", "slow_per_op", "--metric", "ns_per_op",
                 "--out", str(out), "--html", str(page)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(out / f"sweep-{m}.{ext}") for m in ("slow_per_op", "ns_per_op")
                       for ext in ("png", "svg")] + [str(page)]
    assert (out / "sweep-slow_per_op.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sweep-ns_per_op.svg").read_text().lstrip().startswith("<?xml")
    text = page.read_text()
    assert text.count("<figure ") == 2 and text.count("data:image/png;base64,") == 2
    assert text.count('<table class="xs">') == 3        # two figures' tables, the results
    assert "<h3>slow_per_op against workload.iterations, by workload.mark</h3>" in text
    assert f"<h3>Sweep {sweep_dir}: 16 rows (points x designs)</h3>" in text
    assert "http" not in text.replace('lang="en"', "")   # self-contained


@pytest.mark.parametrize("argv, message", [
    (["--x", "foo"], "{csv}: --x: no grid key 'foo'; the grid keys of this sweep: "
                     "workload.iterations, workload.mark, seed"),
    (["--x", "seed", "--facet", "nope"], "{csv}: --facet: no grid key 'nope'; the grid keys "
                                         "of this sweep: workload.iterations, workload.mark, seed"),
    (["--x", "seed", "--facet", "seed"], "{csv}: --facet: 'seed' is the x axis already; the "
                                         "other grid keys: workload.iterations, workload.mark"),
    (["--x", "seed", "--metric", "slow"], "{csv}: --metric: no figure 'slow'; the figures of "
                                          "this sweep: status, ops, slow_per_op, ns_per_op, audit"),
    (["--x", "seed", "--metric", "audit"], "{csv}: --metric: 'audit' is not a number; the "
                                           "numeric figures of this sweep: ops, slow_per_op, "
                                           "ns_per_op"),
    ([], "--sweep: needs --x KEY, the grid key along the x axis"),
    (["--x", "seed", "--machine", "teaching"], "--sweep: draws a sweep's results; --machine is "
                                               "for a config's pictures"),
])
def test_cli_errors_are_one_line(sweep_dir, tmp_path, capsys, argv, message):
    pytest.importorskip("matplotlib")
    assert main(["plot", "--sweep", str(sweep_dir), "--out", str(tmp_path / "o"), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"xensim: error: {message.format(csv=sweep_dir / 'results.csv')}\n"
    assert not (tmp_path / "o").exists()


def test_cli_errors_without_a_sweep(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", "--x", "seed"]) == 2
    assert capsys.readouterr().err == "xensim: error: --x: draws a sweep's results: give --sweep DIR\n"
    assert main(["plot", "--sweep", str(tmp_path), "--x", "seed"]) == 2
    assert capsys.readouterr().err == (f"xensim: error: --sweep: {tmp_path} has no results.csv "
                                       f"(`xensim sweep SWEEP.yaml --out {tmp_path}` writes it)\n")
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    assert main(["plot", "--sweep", str(tmp_path), "--x", "a"]) == 2
    assert capsys.readouterr().err == (f"xensim: error: {tmp_path / 'results.csv'}: not a "
                                       f"sweep's results.csv: its header has no point ... "
                                       f"design columns\n")


def test_the_tables_round_floats_and_name_units(tmp_path):
    """results.csv's 0.9523809524 is 0.9524 in the report, ns_per_op says it is in ns."""
    (tmp_path / "results.csv").write_text(
        HEADER + "\np0,20,false,0,xen-4.1,ok,40,0.9523809524,4502.25,clean\n"
                 "p0,20,false,0,sketch,ok,1200,1.0,120,clean\n")
    t = results_table(tmp_path, ["ns_per_op"])
    assert [c.header for c in t.columns][-3:] == ["slow_per_op", "ns_per_op (ns)", "audit"]
    assert t.cells() == [["p0", "20", "false", "0", "xen-4.1", "40", "0.9524", "4,502", "clean"],
                         ["p0", "20", "false", "0", "sketch", "1,200", "1", "120", "clean"]]
    s = sweep_table(sweep_data(tmp_path, "workload.iterations", metric="ns_per_op"))
    assert [c.header for c in s.columns][3] == "ns_per_op (mean, ns)"


def test_a_line_over_another_still_shows(tmp_path):
    """Two designs with the same values: each line has its own marker, style and size (the
    first drawn biggest), so the one drawn over it leaves it visible."""
    pytest.importorskip("matplotlib")
    (tmp_path / "results.csv").write_text(
        HEADER + "\np0,20,false,0,xen-4.1,ok,40,1.0,100,clean\np0,20,false,0,sketch,ok,40,1.0,100,"
                 "clean\np1,60,false,0,xen-4.1,ok,40,0.5,100,clean\np1,60,false,0,sketch,ok,40,0.5,"
                 "100,clean\n")
    fig = fig_sweep(sweep_data(tmp_path, "workload.iterations"))
    a, b = fig.axes[0].get_lines()
    assert list(a.get_ydata()) == list(b.get_ydata())
    assert (a.get_marker(), a.get_linestyle(), a.get_markersize()) == ("o", "-", 9.0)
    assert (b.get_marker(), b.get_linestyle(), b.get_markersize()) == ("s", "--", 6.5)
