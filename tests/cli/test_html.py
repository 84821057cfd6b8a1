"""The HTML report (xensim/cli/_html.py): written atomically, self-contained, the run's tables
cell for cell, the pictures inline (or a note without matplotlib); rendered in headless
Chromium when one is installed (CI installs Debian's chromium)."""

from __future__ import annotations

import base64
import html
import re
import struct
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import run_chromium
from xensim.config._config import build_memory_map, parse_config
from xensim.xen._machine import Machine
from xensim.plot import PLOT_HINT, have_matplotlib
from xensim.sim._report import RunResult
from xensim.sim._simulate import run_comparison

CONFIG = """
machine: {preset: teaching}
workload:
  kind: script
  script:
    - {domain: g, op: map, superpage: 0, slot: 0}
    - {domain: g, op: map, superpage: 1, slot: 1, writable: false}
    - {domain: g, op: mark, superpage: 2}
    - {domain: g, op: unmap, slot: 0}
compare: [xen-4.1, sketch]
domains: [{name: g, memory: 8MiB}]
"""

needs_mpl = pytest.mark.skipif(not have_matplotlib(),
                               reason="matplotlib is not installed (pip install -e '.[plot]')")


@pytest.fixture(scope="module")
def run():
    cfg = parse_config(CONFIG, "report.yaml")
    mm = build_memory_map(cfg)
    result = RunResult.of(Machine(mm, cfg.machine.pdx), run_comparison(cfg, mm))
    return result, cfg, mm


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    """The report with every picture (when matplotlib is there), written once."""
    from xensim.cli._html import write_html
    result, cfg, mm = run
    path = tmp_path_factory.mktemp("html") / "report.html"
    assert write_html(result, path, cfg, mm) == path
    return path, path.read_text(encoding="utf-8")


class Tables(HTMLParser):
    """Every <table>'s rows of cell texts, and every <img>'s attributes."""

    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(text: str) -> Tables:
    p = Tables()
    p.feed(text)
    return p


def expected_tables(result):
    return result.tables() + result.machine.tables()[1:]


def body_rows(t):
    """The rows a Table renders: the header (when it has one), then Table.cells()."""
    rows = [[c.header for c in t.columns]] if any(c.header for c in t.columns) else []
    return rows + t.cells()


# --------------------------------------------------------------------------

def test_tables_cell_for_cell(run):
    from xensim.cli._html import html_report
    result, cfg, mm = run
    text = html_report(result, cfg, mm, pictures=())
    got = parse(text).tables
    want = expected_tables(result)
    assert len(got) == len(want) == 6
    for g, t in zip(got, want):
        assert g == body_rows(t), t.title
        assert f"<h3>{html.escape(t.title)}</h3>" in text
        for note in t.notes:
            assert f"<li>{html.escape(note)}</li>" in text
    # a few numbers of this run, as the terminal shows them
    main = want[0]
    assert main.title == ("Comparison on teaching: script workload, 4 operations on 1 domain, "
                          "seed 0; Xen 4.8")
    xen = dict(zip([c.key for c in main.columns], main.cells()[0]))
    assert xen["design"] == "xen-4.1" and xen["metadata_bytes"] == "12.00 KiB"
    assert xen["get_page_type"] == "1,536" and xen["slow_get"] == "2"
    assert ">1,536<" in text and ">12.00 KiB<" in text and ">0.00038%<" in text
    assert "No pictures were asked for." in text


def test_self_contained(report):
    _, text = report
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"<link\b|<iframe\b|@import|url\(", text, re.I)
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", text, re.I)
    assert all(r.startswith(("#", "data:image/png;base64,")) for r in refs), refs
    assert "<style>" in text and "</html>" in text


@needs_mpl
def test_pictures_inline(report):
    _, text = report
    imgs = parse(text).imgs
    assert [i["alt"] for i in imgs] == [f"{n} picture of teaching"
                                        for n in ("memmap", "superpages", "overhead", "churn")]
    for img in imgs:
        png = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        w, h = struct.unpack(">II", png[16:24])
        assert w >= 800 and h >= 300
    assert "could not be drawn" not in text and PLOT_HINT not in text


def test_without_matplotlib(run, monkeypatch):
    from xensim.cli._html import html_report
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result, cfg, mm = run
    text = html_report(result, cfg, mm)
    assert "<img" not in text
    assert "Pictures need the plot extra (matplotlib)" in text
    assert "pip install -e &#x27;.[plot]&#x27;" in text
    assert len(parse(text).tables) == 6


def test_written_atomically(run, tmp_path, monkeypatch):
    from xensim.cli import _html
    result, cfg, mm = run
    calls = []
    real = _html.write_atomic
    monkeypatch.setattr(_html, "write_atomic", lambda p, t: (calls.append(Path(p)), real(p, t)))
    path = tmp_path / "out" / "r.html"
    _html.write_html(result, path, cfg, mm, pictures=())
    assert calls == [path]
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.html"]
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("interrupted while rendering")
    monkeypatch.setattr(_html, "html_report", boom)
    with pytest.raises(RuntimeError):
        _html.write_html(result, path, cfg, mm)
    assert path.read_bytes() == before      # the old report is intact, nothing half-written
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.html"]


def test_cli_run_html(tmp_path, capsys):
    """`xensim run --html FILE`."""
    from xensim.cli import _main as _cli
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "r.html"
    rc = _cli.main(["run", str(cfg), "--quiet", "--html", str(out)])
    capsys.readouterr()
    assert rc == 0
    text = out.read_text(encoding="utf-8")
    assert ("Comparison on teaching: script workload, 4 operations on 1 domain, seed 0; "
            "Xen 4.8") in text


# --------------------------------------------------------------------------
# Headless Chromium
# --------------------------------------------------------------------------

def test_chromium_dom(report, run, tmp_path):
    path, text = report
    p = run_chromium(tmp_path, "--dump-dom", path.as_uri())
    dom = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0 and "</html>" in dom, p.stderr.decode(errors="replace")[-2000:]
    result = run[0]
    for t in expected_tables(result):       # every title and every cell, as the browser parsed them
        assert html.escape(t.title, quote=False) in dom
        for row in t.cells():
            for cell in row:
                assert f">{html.escape(cell, quote=False)}<" in dom, (t.title, cell)
    n = len(parse(text).imgs)
    assert f'data-images="{n}"' in dom
    assert f'data-images-decoded="{n}"' in dom    # every inline PNG decoded
    if have_matplotlib():
        assert n == 4


def test_chromium_screenshot(report, tmp_path):
    path, _ = report
    shot = tmp_path / "shot.png"
    p = run_chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,1600",
                     f"--screenshot={shot}", path.as_uri())
    assert p.returncode == 0 and shot.exists(), p.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 1600)
    # not blank: the pixels (decompressed IDAT) take many values, not one background
    idat, pos = b"", 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    pixels = zlib.decompress(idat)
    assert len(set(pixels)) > 100


@pytest.mark.parametrize("width", [1400, 1280])
def test_chromium_default_run_tables_fit_the_page(tmp_path, width):
    """The default run (five designs, the random workload): at 1400 px (and 1280) no table
    is wider than the page: the comparison's audit column shows without a scrollbar (the
    page's script lists the tables whose box scrolls in data-overflowing)."""
    from xensim.config._config import default_config
    from xensim.cli._html import write_html
    cfg = default_config()
    mm = build_memory_map(cfg)
    result = RunResult.of(Machine(mm, cfg.machine.pdx), run_comparison(cfg, mm))
    path = write_html(result, tmp_path / "default.html", cfg, mm, pictures=())
    p = run_chromium(tmp_path, f"--window-size={width},1000", "--dump-dom", path.as_uri())
    dom = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0 and "</html>" in dom, p.stderr.decode(errors="replace")[-2000:]
    assert 'data-overflowing=""' in dom, re.findall(r'data-overflowing="[^"]*"', dom)
    assert ">clean<" in dom


def test_long_text_cells_may_wrap():
    from xensim.cli._html import table_html
    from xensim.output._render import Column, Table
    t = Table("t", [Column("e", "errors", align="<"), Column("n", "n")],
              [{"e": "EOPNOTSUPP:18 EINVAL:2 EPERM:1", "n": 1}, {"e": "-", "n": 2}])
    text = table_html(t)
    assert '<td class="txt long">EOPNOTSUPP:18 EINVAL:2 EPERM:1</td>' in text
    assert '<td class="txt">-</td>' in text and '<td class="num">1</td>' in text
