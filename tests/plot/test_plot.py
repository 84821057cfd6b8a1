"""Pictures (xensim/plot/, xensim plot): the data behind each figure, exactly; the figures are
drawn (valid, non-trivial PNG and SVG); `xensim plot`; the one-line error without
matplotlib."""

from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from xensim import REGISTRY, design_names, load_config
from xensim.config._config import build_memory_map, default_config, parse_config
from xensim._errors import ConfigError
from xensim.xen._machine import Machine
from xensim.designs import design_color, design_names
from xensim.plot import (PLOT_HINT, ChurnMix,
                                PlotUnavailable, busy_superpages, churn_data, superpage_activity,
                                have_matplotlib, memmap_data, overhead_data, states_for_run,
                                superpage_states, synthetic_memmap)
from xensim.sim import config_workload, start
from xensim.config._presets import load_preset

ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30

needs_mpl = pytest.mark.skipif(not have_matplotlib(),
                               reason="matplotlib is not installed (pip install -e '.[plot]')")


# --------------------------------------------------------------------------
# 1. The memory map's data
# --------------------------------------------------------------------------

def test_memmap_data_teaching_mask():
    d = memmap_data(Machine(load_preset("teaching"), "mask"))
    assert d.name == "teaching"
    assert d.ram_bytes == 0x9fc00 + (0x80000000 - 0x100000) + 0x40000000
    assert d.max_pfn == 0x140000 and d.max_pdx == 0xc0000
    assert d.pdx_mode == "mask" and d.compressed
    assert d.ranges == [(0x0, 0x9fc00, "ram"), (0x9fc00, 0xa0000, "reserved"),
                        (0xf0000, 0x100000, "reserved"), (0x100000, 0x80000000, "ram"),
                        (0xfec00000, 0xfee01000, "reserved"), (0x100000000, 0x140000000, "ram")]
    assert d.frames == [(0x0, 0x9f), (0x100, 0x80000), (0x100000, 0x140000)]
    # the EBDA / VGA / ROM frames, and the 2-4 GiB MMIO window
    assert d.holes == [(0x9f, 0x100), (0x80000, 0x100000)]
    # mask squeezes bit 19: high memory moves down to pdx 0x80000
    assert d.pdx_ranges == [(0x0, 0x9f, 0x0, 0x9f), (0x100, 0x80000, 0x100, 0x80000),
                            (0x100000, 0x140000, 0x80000, 0xc0000)]
    # 12 PDX groups of 65,536 frames: 8 below 2 GiB, 4 above 4 GiB
    assert d.groups == ([(g, g << 16, (g + 1) << 16) for g in range(8)]
                        + [(8 + k, 0x100000 + (k << 16), 0x100000 + ((k + 1) << 16)) for k in range(4)])
    assert d.partial_superpages == [0]
    assert d.top == 0x140000000


def test_memmap_data_teaching_no_pdx():
    d = memmap_data(Machine(load_preset("teaching"), "none"))
    assert not d.compressed and d.max_pdx == d.max_pfn == 0x140000
    assert [g for g, _, _ in d.groups] == list(range(8)) + list(range(16, 20))
    assert d.groups[8] == (16, 0x100000, 0x110000)
    assert d.pdx_ranges[2] == (0x100000, 0x140000, 0x100000, 0x140000)


def test_memmap_data_gnr_offset():
    d = memmap_data(Machine(load_preset("intel-gnr-4s"), "offset"))
    assert d.compressed and d.max_pdx == 0x38000000 and d.max_pfn == 0x133e80000
    assert len(d.groups) == 8192
    assert len(d.holes) == 4 and d.partial_superpages == []
    # every PDX group is one contiguous run of 65,536 frames holding RAM
    assert all(e - s == 1 << 16 for _, s, e in d.groups)
    assert d.groups[-1] == (0x37ff, 0x133e70000, 0x133e80000)
    assert d.pdx_ranges[2] == (0x63e80000, 0x6be80000, 0x10000000, 0x18000000)


# --------------------------------------------------------------------------
# 2. The superpage states after a known tiny run
# --------------------------------------------------------------------------

TINY = """
machine: {preset: teaching}
workload:
  kind: script
  script:
    - {domain: g, op: map, superpage: 0, slot: 0}
    - {domain: g, op: map, superpage: 0, slot: 1, writable: false}
    - {domain: g, op: map, superpage: 1, slot: 2, writable: false}
    - {domain: g, op: mark, superpage: 2}
    - {domain: g, op: unmap, slot: 0}
    - {domain: g, op: unmap, slot: 1}
compare: [%s]
domains: [{name: g, memory: 8MiB}]
""" % ", ".join(design_names())


@pytest.fixture(scope="module")
def tiny():
    cfg = parse_config(TINY, "tiny.yaml")
    return cfg, build_memory_map(cfg)


def test_tiny_guest_superpages(tiny):
    """The guest's four superpages are machine superpages 1-4 (superpage 0 is partly RAM)."""
    cfg, mm = tiny
    s = start(cfg, mm, "xen-4.1", config_workload(cfg))
    assert s.ops_done == 0
    assert s.kernels["g"].superpage_mfns(0, 4) == [512, 1024, 1536, 2048]


def test_states_at_end(tiny):
    cfg, mm = tiny
    r = states_for_run(cfg, mm, "end")
    assert r.at_op == 6 and r.ops == 6 and r.missing == {}
    assert [s.design for s in r.states] == list(design_names())
    by = {s.design: s for s in r.states}
    # superpage 2 (guest's 1): one read-only mapping; superpage 3 (guest's 2): marked
    for name in ("pageinfo-count", "superpage-info", "xen-4.1"):
        assert by[name].nonzero() == {2: ("dynamic", 1), 3: ("mark", 1)}
        assert by[name].state_counts() == {"none": 1534, "dynamic": 1, "mark": 1}
    # no MARK_SUPER in sketch: the mark failed
    assert by["sketch"].nonzero() == {2: ("dynamic", 1)}
    assert by["sketch"].state_counts() == {"none": 1535, "dynamic": 1, "mark": 0}
    # per-mapping and Xen 4.10+ (none) keep no per-superpage word: no state, no count
    # (per-mapping's one live 2 MiB entry holds its own references)
    for name in ("per-mapping", "none"):
        s = by[name]
        assert not s.metadata and s.nonzero() == {} and s.state_counts() == {} and s.busy == 0
        assert not s.count.any()
        assert s.source == ("no per-superpage metadata: each 2 MiB mapping holds its own "
                            "references")
    assert int(by["per-mapping"].mappings.sum()) == 1 and int(by["none"].mappings.sum()) == 0
    s = by["xen-4.1"]
    assert s.superpages.size == 1536 and int(s.full.sum()) == 1535
    assert not s.full[0] and s.superpages[0] == 0
    assert int(s.mappings.sum()) == 1 and int(s.mappings[2]) == 1
    assert r.guest_frames == [(156, 159), (512, 2560)]


def test_states_at_op_and_peak(tiny):
    cfg, mm = tiny
    r = states_for_run(cfg, mm, 2)
    assert r.at_op == 2 and r.why == "after operation 2 of 6"
    for s in r.states:                      # one superpage mapped twice (RW and RO)
        if s.design == "none":              # ... by two L1 tables: no 2 MiB entry
            assert s.nonzero() == {} and int(s.mappings.sum()) == 0
            continue
        if s.design == "per-mapping":       # two 2 MiB entries, no metadata
            assert s.nonzero() == {} and int(s.mappings[1]) == 2
            continue
        assert s.nonzero() == {1: ("dynamic", 2)}
        assert int(s.mappings[1]) == 2
    # the busiest point: after op 4 (two mapped, one marked where MARK exists)
    r = states_for_run(cfg, mm, "peak")
    assert r.at_op == 4 and r.why.startswith("after operation 4 of 6, the busiest point")
    by = {s.design: s for s in r.states}
    assert by["xen-4.1"].nonzero() == {1: ("dynamic", 2), 2: ("dynamic", 1), 3: ("mark", 1)}
    assert by["superpage-info"].nonzero() == {1: ("dynamic", 2), 2: ("dynamic", 1), 3: ("mark", 1)}
    assert by["sketch"].nonzero() == {1: ("dynamic", 2), 2: ("dynamic", 1)}
    assert by["per-mapping"].nonzero() == {}


def test_activity_matches_states(tiny):
    """The cheap per-operation reading equals the full one, after every operation."""
    cfg, mm = tiny
    wl = config_workload(cfg)
    for design in design_names():
        seen = []

        def each(m):
            s = superpage_states(m)
            if not s.metadata:              # the cheap reading counts the live 2 MiB entries
                seen.append((superpage_activity(m), (int(np.count_nonzero(s.mappings)),
                                                     int(s.mappings.sum()))))
            else:
                seen.append((superpage_activity(m), (s.busy, int(s.count.sum()))))
        run = start(cfg, mm, design, wl)
        each(run.machine)                   # after the set-up, then after each operation
        for _ in run.steps():
            each(run.machine)
        assert len(seen) == 7
        assert [a for a, _ in seen] == [b for _, b in seen], design
    run = start(cfg, mm, "xen-4.1", wl)
    assert run.run(4) == 4
    assert busy_superpages(run.machine) == 3


def test_states_of_xen41_words_decoded():
    """MARK with mappings on top: xen-4.1 keeps state MARK and counts 1 + mappings."""
    cfg = parse_config(TINY.replace("- {domain: g, op: unmap, slot: 0}",
                                    "- {domain: g, op: map, superpage: 2, slot: 3}"), "t.yaml")
    r = states_for_run(cfg, build_memory_map(cfg), "end")
    by = {s.design: s for s in r.states}
    assert by["xen-4.1"].nonzero() == {1: ("dynamic", 1), 2: ("dynamic", 1), 3: ("mark", 2)}
    # superpage-info: the RW word holds MARK | 2 (mark + one RW mapping)
    assert by["superpage-info"].nonzero()[3] == ("mark", 2)
    assert by["per-mapping"].nonzero() == {} and not by["per-mapping"].metadata


# --------------------------------------------------------------------------
# 3. Overhead against RAM
# --------------------------------------------------------------------------

PRESET_BYTES = {   # pdx mask: (ram_bytes, {row: bytes})
    "firecracker-1g": (1073347584, {
        "xen-frame-table": 8388608, "xensim-frame-table": 4718592, "pageinfo-count": 2097152,
        "xen-4.1-dense": 4096, "xen-4.1-dense-pdx": 4096, "sparse-16B": 8192, "sparse-8B": 4096}),
    "teaching": (3220831232, {
        "xen-frame-table": 25165824, "xensim-frame-table": 14155776, "pageinfo-count": 6291456,
        "xen-4.1-dense": 20480, "xen-4.1-dense-pdx": 12288, "sparse-16B": 24576, "sparse-8B": 12288}),
    "qemu-2node": (4294967296, {
        "xen-frame-table": 33554432, "xensim-frame-table": 18874368, "pageinfo-count": 8388608,
        "xen-4.1-dense": 24576, "xen-4.1-dense-pdx": 16384, "sparse-16B": 32768, "sparse-8B": 16384}),
    "qemu-pc-4g": (4294967296, {
        "xen-frame-table": 33554432, "xensim-frame-table": 18874368, "pageinfo-count": 8388608,
        "xen-4.1-dense": 20480, "xen-4.1-dense-pdx": 20480, "sparse-16B": 32768, "sparse-8B": 16384}),
    "intel-clx-2s": (207232172032, {
        "xen-frame-table": 1619001344, "xensim-frame-table": 910688256, "pageinfo-count": 404750336,
        "xen-4.1-dense": 790528, "xen-4.1-dense-pdx": 790528, "sparse-16B": 1581056,
        "sparse-8B": 790528}),
    "intel-gnr-4s": (2199023255552, {
        "xen-frame-table": 17179869184, "xensim-frame-table": 9663676416,
        "pageinfo-count": 4294967296, "xen-4.1-dense": 80715776, "xen-4.1-dense-pdx": 80715776,
        "sparse-16B": 16777216, "sparse-8B": 8388608}),
}


#: the overhead rows drawn (a 0 B row has no point on the log axis), frame tables first,
#: then the designs' own rows in registration order, then the shared sparse tables
DRAWN = ("xen-frame-table", "xensim-frame-table", "pageinfo-count", "xen-4.1-dense",
         "xen-4.1-dense-pdx", "sparse-8B", "sparse-16B")


@pytest.fixture(scope="module")
def overhead_points():
    return overhead_data("mask", sizes=(GiB, 4 * GiB), machine=load_preset("teaching"))


def test_overhead_presets_exact(overhead_points):
    d = overhead_points
    assert d.pdx == "mask" and d.drawn == list(DRAWN)
    for name in DRAWN:
        got = {m: (r, b) for m, r, b in d.presets[name]}
        assert got == {m: (ram, rows[name]) for m, (ram, rows) in PRESET_BYTES.items()}, name
        # sorted by RAM for the lines
        assert [r for _, r, _ in d.presets[name]] == sorted(r for _, r, _ in d.presets[name])
    # the 2010 thread's ratios: 8 B / 4 KiB against 8 B / 2 MiB
    gnr = PRESET_BYTES["intel-gnr-4s"][1]
    assert gnr["pageinfo-count"] == 512 * gnr["sparse-8B"]
    name, ram, rows = d.this
    assert name == "teaching" and ram == 3220831232 and rows == PRESET_BYTES["teaching"][1]


def test_overhead_synthetic_exact(overhead_points):
    d = overhead_points
    small = 0x9fc00 + GiB - (1 << 20)            # [0, 0x9fc00) + [1 MiB, 1 GiB)
    big = 0x9fc00 + 2 * GiB - (1 << 20) + 2 * GiB  # ... up to 2 GiB, then [4 GiB, 6 GiB)
    assert synthetic_memmap(GiB).ram_bytes == small
    assert synthetic_memmap(4 * GiB).ram_bytes == big
    assert d.synthetic["pageinfo-count"] == [("pc-1GiB", small, 4 * 65536 * 8),
                                             ("pc-4GiB", big, 16 * 65536 * 8)]
    assert d.synthetic["xen-4.1-dense"] == [("pc-1GiB", small, 8 * 512), ("pc-4GiB", big, 8 * 3072)]
    assert d.synthetic["xen-4.1-dense-pdx"][1] == ("pc-4GiB", big, 8 * 2048)
    assert d.synthetic["sparse-8B"] == [("pc-1GiB", small, 4096), ("pc-4GiB", big, 4 * 4096)]


# --------------------------------------------------------------------------
# 4. Slow path against churn
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def churn():
    return churn_data(iterations=(1, 4), fractions=(0.0, 0.5, 1.0))


def test_churn_iterations_exact(churn):
    c = churn
    with_pse = [d for d in design_names() if d != "none"]
    assert c.machine == "teaching" and c.designs == with_pse and c.missing == {}
    # none (Xen 4.10+) has no superpage path: no series (its cost is the comparison's)
    assert c.no_superpages == ["none"]
    assert not any(k[0] == "none" for k in list(c.iterations) + list(c.fractions))
    for d in with_pse:                         # unpinned churn: every map and unmap is slow
        assert c.iterations[(d, False)] == [1.0, 1.0]
    for d in ("pageinfo-count", "superpage-info", "xen-4.1"):
        assert c.iterations[(d, True)] == [0.0, 0.0]     # MARK_SUPER: every op a count update
    # per-mapping and sketch have no MARK_SUPER: no "with MARK" series (their failed
    # marks would count as operations: 2N slow in 2N + 2 ops, a rate that says nothing)
    assert c.mark_unsupported == ["per-mapping", "sketch"]
    for d in ("per-mapping", "sketch"):
        assert (d, True) not in c.iterations and (d, True) not in c.fractions


def test_churn_fractions_exact(churn):
    c = churn
    assert c.fraction_values == [0.0, 0.5, 1.0]
    assert c.fractions[("per-mapping", False)] == [1.0, 1.0, 1.0]
    for d in ("pageinfo-count", "superpage-info", "xen-4.1", "sketch"):
        assert c.fractions[(d, False)] == [0.0, 0.5, 1.0]
    for d in ("pageinfo-count", "superpage-info", "xen-4.1"):
        assert c.fractions[(d, True)] == [0.0, 0.0, 0.0]


def test_churn_mix_spreads_pairs():
    from xensim.guest._workload import DomainSpec
    cfg = parse_config("workload: {kind: churn}\ndomains: [{name: guest, memory: 8MiB}]\n")
    for k in range(9):
        wl = ChurnMix(cfg.workload, [DomainSpec("guest", 8 << 20)], k / 8, mark=False)
        assert sum(wl.churns(i) for i in range(wl.pairs)) == 2 * k
        assert wl.total == wl.prelude + 2 * wl.pairs + ChurnMix.HELD


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@needs_mpl
def test_figures_written(tmp_path):
    from xensim.plot import make_pictures
    cfg = parse_config(TINY, "tiny.yaml")
    paths = make_pictures(cfg, build_memory_map(cfg), tmp_path, "all")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{e}" for n in ("memmap", "superpages", "overhead", "churn")
                           for e in ("png", "svg"))
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 20_000, p
        if p.suffix == ".png":
            w, h = png_size(data)
            assert w >= 800 and h >= 300, (p, w, h)
        else:
            root = ET.fromstring(data)
            assert root.tag.endswith("svg")
            assert data.count(b"<path") > 20
    assert not list(tmp_path.glob(".*.tmp"))


@needs_mpl
def test_memmap_figure_of_every_preset():
    from xensim.plot import fig_memmap, figure_bytes
    for name in ("firecracker-1g", "qemu-2node", "intel-clx-2s", "intel-gnr-4s"):
        png = figure_bytes(fig_memmap(memmap_data(Machine(load_preset(name), "offset"))))
        assert png_size(png)[0] >= 800


@needs_mpl
def test_churn_figure_draws_true_values_and_says_mark_unsupported(churn):
    """No nudging: every line's y values are a series of the data exactly (per-mapping's
    1.0 in panel b is drawn at 1.0); designs without MARK have no dashed line, and their
    legend entry says "MARK unsupported"."""
    from xensim.plot import fig_churn
    fig = fig_churn(churn)
    axa, axb = fig.axes[:2]
    for ax, data in ((axa, churn.iterations), (axb, churn.fractions)):
        drawn = sorted(tuple(float(y) for y in ln.get_ydata()) for ln in ax.get_lines())
        want = sorted(tuple(float(y) for y in ys) for ys in data.values())
        assert drawn == want
        assert sum(ln.get_linestyle() == "--" for ln in ax.get_lines()) == 3   # 3 designs mark
    # per-mapping in (b): its own solid line at exactly 1.0, visible (the widest is under)
    pm = [ln for ln in axb.get_lines() if ln.get_color() == design_color("per-mapping")]
    assert len(pm) == 1 and list(pm[0].get_ydata()) == [1.0, 1.0, 1.0]
    labels = [t.get_text() for t in axb.get_legend().get_texts()]
    assert "per-mapping: MARK unsupported" in labels and "sketch: MARK unsupported" in labels
    assert "per-mapping, with MARK" not in labels and "sketch, with MARK" not in labels
    assert "xen-4.1, with MARK" in labels
    # equal series are stacked: in panel (a) all five unpinned lines are 1.0, widths differ
    ones = [ln for ln in axa.get_lines() if ln.get_linestyle() == "-"]
    assert len({ln.get_linewidth() for ln in ones}) == 5


FAR_RESERVED = """
name: far-reserved
ram:
  - [0x0, 0x9fc00]
  - [0x100000, 0x80000000]
  - [0x100000000, 0x140000000]
other:
  - [0xfec00000, 0xfee01000, reserved]
  - [0xfd00000000, 0x10000000000, reserved]
"""


def test_memmap_data_zooms_on_ram_past_a_far_reserved_range(tmp_path):
    from xensim.config import load_memmap_file
    f = tmp_path / "far.yaml"
    f.write_text(FAR_RESERVED)
    d = memmap_data(Machine(load_memmap_file(str(f)), "mask"))
    assert d.top == 0x140000000                           # RAM's end, not 1 TiB
    assert d.beyond == [(0xfd00000000, 0x10000000000, "reserved")]
    near = memmap_data(Machine(load_preset("teaching"), "mask"))
    assert near.top == 0x140000000 and near.beyond == []


@needs_mpl
def test_memmap_figure_names_what_it_leaves_out(tmp_path):
    from xensim.config import load_memmap_file
    from xensim.plot import fig_memmap
    f = tmp_path / "far.yaml"
    f.write_text(FAR_RESERVED)
    fig = fig_memmap(memmap_data(Machine(load_memmap_file(str(f)), "mask")))
    ax = fig.axes[0]
    assert ax.get_xlim() == (0, 0x140000000)
    assert ax.get_title().splitlines()[-1] == (
        "axis zoomed on RAM; not drawn, above 5 GiB: reserved [0xfd00000000, 0x10000000000) "
        "12.00 GiB")


@needs_mpl
def test_superpages_figure_gives_the_heat_map_most_of_the_height():
    from xensim.plot import fig_superpages
    cfg = default_config()
    fig = fig_superpages(states_for_run(cfg, build_memory_map(cfg), "peak"))
    fig.canvas.draw()
    strip, heat = fig.axes[0], fig.axes[1]
    hs, hh = strip.get_position().height, heat.get_position().height
    assert hs < 0.6 * hh, (hs, hh)
    assert fig.legends and strip.get_legend() is None     # the legend is the figure's, below


# --------------------------------------------------------------------------
# The command, and the missing-matplotlib error
# --------------------------------------------------------------------------

def cli_main(monkeypatch):
    """xensim's real main()."""
    from xensim.cli import main
    return main


def hide_matplotlib(monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError


def test_missing_matplotlib_one_line_error(monkeypatch, capsys, tmp_path):
    main = cli_main(monkeypatch)
    hide_matplotlib(monkeypatch)
    assert not have_matplotlib()
    rc = main(["plot", "--which", "memmap", "--out", str(tmp_path / "p")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err == "xensim: error: plotting needs matplotlib: pip install -e '.[plot]'\n"
    assert not (tmp_path / "p").exists()
    e = PlotUnavailable("No module named 'matplotlib'")
    assert isinstance(e, ConfigError) and str(e) == PLOT_HINT


@needs_mpl
def test_cli_plot_writes_and_prints(monkeypatch, capsys, tmp_path):
    main = cli_main(monkeypatch)
    out_dir = tmp_path / "pics"
    rc = main(["plot", "--machine", "qemu-2node", "--which", "memmap", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.splitlines() == [str(out_dir / "memmap.png"), str(out_dir / "memmap.svg")]
    assert png_size((out_dir / "memmap.png").read_bytes())[0] >= 800


@needs_mpl
def test_cli_plot_bad_at_op(monkeypatch, capsys, tmp_path):
    main = cli_main(monkeypatch)
    rc = main(["plot", str(ROOT / "configs" / "when-pinning-pays.yaml"), "--which", "superpages",
               "--at-op", "soon", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err == "xensim: error: --at-op: expected end, peak or a number of operations, got 'soon'\n"


def test_default_config_states_every_design():
    """The default config: every design runs, all read at the same point."""
    cfg = default_config()
    r = states_for_run(cfg, build_memory_map(cfg))
    assert [s.design for s in r.states] == list(design_names()) and not r.missing
    assert 0 < r.at_op <= r.ops == 300
    # busy: a design's words in use; per-mapping and none keep no word (none has no PSE
    # entry at all: its 2 MiB mappings are L1 tables)
    assert [s.busy > 0 for s in r.states] == [REGISTRY[d].words_in is not None
                                              for d in design_names()]
    assert [bool(s.mappings.any()) for s in r.states] == [REGISTRY[d].supports_pse
                                                          for d in design_names()]


def test_when_pinning_pays_peak():
    """churn with MARK ends with everything unmarked: the peak shows the marked superpage."""
    cfg = load_config(ROOT / "configs" / "when-pinning-pays.yaml")
    r = states_for_run(cfg, build_memory_map(cfg))
    by = {s.design: s for s in r.states}
    assert r.at_op == 2                     # marked (xen-4.1), then mapped once
    assert by["xen-4.1"].nonzero() == {1: ("mark", 2)}
    assert by["sketch"].nonzero() == {1: ("dynamic", 1)}
    assert np.count_nonzero(by["sketch"].mappings) == 1


def test_why_per_mapping_peak_counts():
    """shared: 2 superpages mapped 512 times each, then unmapped: the peak is op 512."""
    cfg = load_config(ROOT / "configs" / "why-per-mapping-was-slow.yaml")
    r = states_for_run(cfg, build_memory_map(cfg))
    assert r.ops == 1024 and r.at_op == 512
    for s in r.states:                      # xen-4.1's count; per-mapping: its PSE entries only
        assert s.nonzero() == ({1: ("dynamic", 512), 2: ("dynamic", 512)} if s.metadata
                               else {}), s.design
        assert int(s.mappings.sum()) == 1024


def test_cli_plot_module_is_light():
    """xensim.cli._plot imports the pictures' code (and matplotlib) only when the command
    runs, not at module level; its --which names are the pictures' FIGURES."""
    import ast
    from xensim.cli._plot import FIGURE_NAMES
    from xensim.plot import FIGURES
    assert FIGURE_NAMES == FIGURES
    tree = ast.parse((ROOT / "xensim" / "cli" / "_plot.py").read_text())
    top = [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    top += [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in top if "plot" in m or "matplotlib" in m], top


# --------------------------------------------------------------------------
# Every picture's words fit in it (rendered: matplotlib's bounding boxes)
# --------------------------------------------------------------------------

def _drawn_texts(fig):
    """Every visible text artist the figure draws: titles, labels, tick labels in view,
    legends, free text."""
    out = list(fig.texts)
    for lg in fig.legends:
        out += lg.get_texts()
    for ax in fig.axes:
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        out += ax.texts
        if ax.get_legend():
            out += ax.get_legend().get_texts()
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * abs(hi - lo)
            for tk in axis.get_major_ticks():
                if lo - slack <= tk.get_loc() <= hi + slack:
                    out += [lb for lb in (tk.label1, tk.label2) if lb.get_visible()]
    return [t for t in out if t.get_visible() and t.get_text()]


def assert_texts_fit(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    texts = _drawn_texts(fig)
    assert texts
    out = [(t.get_text()[:50], tuple(round(float(v)) for v in t.get_window_extent(r).extents))
           for t in texts
           if not (-0.5 <= t.get_window_extent(r).x0 and t.get_window_extent(r).x1 <= w + 0.5
                   and -0.5 <= t.get_window_extent(r).y0 and t.get_window_extent(r).y1 <= h + 0.5)]
    assert out == [], (w, h)


@needs_mpl
@pytest.mark.parametrize("which", ["memmap", "overhead", "superpages", "churn"])
def test_every_pictures_title_labels_and_legend_fit(which):
    """The tight box of each text artist of the rendered figure lies within the figure
    (the churn picture's title was wider than the figure: clipped left and right in the
    PNG, the SVG and the HTML report)."""
    from xensim.plot import build_figure
    cfg = default_config()
    assert_texts_fit(build_figure(which, cfg, build_memory_map(cfg)))


@needs_mpl
def test_the_sweep_figures_texts_fit(tmp_path):
    from xensim.plot import fig_sweep, sweep_data
    lines = ["point,workload.iterations,seed,design,ops,slow_per_op"]
    for k, (it, seed) in enumerate([(20, 0), (20, 1), (600, 0), (600, 1)]):
        for d in design_names():
            lines.append(f"p{k},{it},{seed},{d},{it},{0.5 + seed / 10}")
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    assert_texts_fit(fig_sweep(sweep_data(tmp_path, "workload.iterations")))


@needs_mpl
def test_a_design_without_metadata_is_a_blank_row_that_says_so(tiny):
    """per-mapping and none keep no per-superpage word: their rows of the superpages
    picture draw no state and no count, and say why."""
    from xensim.plot import fig_superpages
    cfg, mm = tiny
    fig = fig_superpages(states_for_run(cfg, mm, "peak"))
    strip, heat = fig.axes[0], fig.axes[1]
    said = [t.get_text() for t in strip.texts]
    assert said == ["no per-superpage metadata: each 2 MiB mapping holds its own references"] * 2
    assert [t.get_text() for t in heat.texts] == ["no count kept"] * 2
    names = [t.get_text() for t in heat.get_yticklabels()]
    grid = heat.images[0].get_array()
    for row, name in enumerate(names):
        if name in ("per-mapping", "none"):
            assert grid.mask[row].all()              # nothing drawn: every cell blank
