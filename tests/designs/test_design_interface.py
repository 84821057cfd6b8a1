"""The design interface: what each design says of itself (words and their decoding, the
superpage states, activity, metadata rows, colour, default), the registry's helpers and
``xensim designs``. Each test builds a small machine, maps or marks superpages through a
guest kernel's hypercalls (audited after every step) and asserts exact values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MiB, assert_clean
from xensim import GuestKernel, Machine, MemoryMap
from xensim.cli import main
from xensim.config import load_preset
from xensim.designs import (PALETTE, REGISTRY, SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_NONE,
                            SuperpageDesign, catalog, default_design, design_color, design_names,
                            metadata_rows)
from xensim.mem import SGT_dynamic, SGT_mark

VA = 1 << 39                                    # an L4 slot of its own: 2 MiB slots from here


def machine(design: str) -> tuple[Machine, GuestKernel]:
    """64 MiB of RAM, one guest with 16 MiB populated as 8 superpages (gfn 0 on) and its
    page-table tree built."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", superpage=design)
    domid = m.create_domain("guest", 8192)
    k = GuestKernel(m, domid)
    assert k.populate(0, 8 * 512) == 8
    assert k.build([VA]) == 0
    assert_clean(m)
    return m, k


def mapped(design: str, ro: int = 0, rw: int = 1, mark: int = 0):
    """``rw`` writable and ``ro`` read-only mappings of superpage 0, MARK_SUPER on
    superpages 1 .. ``mark``."""
    m, k = machine(design)
    sp = k.superpage_mfns(0, 8)
    slot = 0
    for writable, n in ((True, rw), (False, ro)):
        for _ in range(n):
            assert k.map_superpages(VA + (slot << 21), [sp[0]], writable) == 0
            assert_clean(m)
            slot += 1
    for mfn in sp[1:1 + mark]:
        assert k.mark_superpage(mfn) == 0
        assert_clean(m)
    return m, k, sp


# --------------------------------------------------------------------------
# words(), word_text(), word_fields()

def test_xen41_words():
    m, _, sp = mapped("xen-4.1", ro=1, rw=1, mark=1)
    d = m.superpage
    assert d.words(sp[0]) == [("word", SGT_dynamic | 2)]
    assert d.words(sp[1]) == [("word", SGT_mark | 1)]
    assert d.word_text(0, SGT_dynamic | 2) == "dynamic/2"
    assert d.word_text(0, SGT_mark | 1) == "mark/1"
    assert d.word_fields(0, SGT_dynamic | 2) == {"state": "dynamic", "count": 2}


def test_superpage_info_words():
    m, _, sp = mapped("superpage-info", ro=2, rw=1, mark=1)
    d = m.superpage
    assert d.words(sp[0]) == [("ro count", 2), ("rw count", 1)]
    assert d.words(sp[1]) == [("ro count", 0), ("rw count", (1 << 63) | 1)]
    assert d.word_text(1, (1 << 63) | 1) == "mark|1" and d.word_text(0, 2) == "2"
    assert d.word_fields(1, 5) == {}


def test_pageinfo_count_words():
    m, _, sp = mapped("pageinfo-count", ro=1, rw=1, mark=1)
    d = m.superpage
    assert d.words_in == "page_info"
    assert d.words(sp[0]) == [("page_info count", 2)]
    assert d.words(sp[1]) == [("page_info count", (1 << 63) | 1)]
    assert d.words(sp[2]) == [("page_info count", 0)]


def test_sketch_and_per_mapping_words():
    m, _, sp = mapped("sketch", rw=2)
    assert m.superpage.words(sp[0]) == [("count", 2)]
    m, _, sp = mapped("per-mapping", rw=2)
    assert m.superpage.words_in is None and m.superpage.words(sp[0]) is None
    assert m.superpage.no_words_text.startswith("no per-superpage word (per-mapping")


def test_word_problem():
    assert REGISTRY["xen-4.1"].word_problem(0, 3 << 62) == "superpage state bits corrupted"
    assert REGISTRY["xen-4.1"].word_problem(0, SGT_mark | 1) is None
    for name in design_names():
        if name != "xen-4.1":
            assert REGISTRY[name].word_problem(0, 3 << 62) is None, name


# --------------------------------------------------------------------------
# superpage_states(), activity()

def states(m: Machine):
    spdx = np.arange(32, dtype=np.int64)                    # pdx mode none: spdx = mfn >> 9
    mappings = np.zeros(32, dtype=np.int64)
    return m.superpage.superpage_states(spdx, mappings)


@pytest.mark.parametrize("design", ["xen-4.1", "superpage-info", "pageinfo-count"])
def test_states_of_counting_designs_with_mark(design):
    m, _, sp = mapped(design, ro=1, rw=2, mark=2)
    st = states(m)
    want_state = np.full(32, SPAGE_NONE)
    want_count = np.zeros(32)
    want_state[sp[0] >> 9], want_count[sp[0] >> 9] = SPAGE_DYNAMIC, 3
    for mfn in sp[1:3]:
        want_state[mfn >> 9], want_count[mfn >> 9] = SPAGE_MARK, 1
    assert st.state.tolist() == want_state.tolist()
    assert st.count.tolist() == want_count.tolist()
    assert m.superpage.activity() == (3, 5)


def test_states_of_a_design_without_words_are_the_mappings():
    m, _, sp = mapped("per-mapping", rw=2)
    mappings = np.zeros(32, dtype=np.int64)
    mappings[sp[0] >> 9] = 2
    st = m.superpage.superpage_states(np.arange(32, dtype=np.int64), mappings)
    assert st.source == "no per-superpage metadata: live 2 MiB entries in the page tables"
    assert np.flatnonzero(st.state).tolist() == [sp[0] >> 9]
    assert st.count[sp[0] >> 9] == 2 and m.superpage.activity() is None


# --------------------------------------------------------------------------
# metadata_rows(), the overhead report's design rows

def test_metadata_rows_on_the_teaching_machine():
    # teaching: 12 PDX groups of 65,536 frames with RAM; max_pfn 0x140000, max_pdx 0xc0000;
    # 1,538 superpages with RAM in 3 chunks of 512 entries
    m = Machine(load_preset("teaching"), "mask")
    rows = {r.name: (r.bytes, r.unit, r.entry_bytes, r.shared) for r in metadata_rows(m.design_host)}
    assert [n for n in rows if not rows[n][3]][:4] == ["per-mapping", "pageinfo-count",
                                                       "xen-4.1-dense", "xen-4.1-dense-pdx"]
    assert list(rows)[-2:] == ["sparse-8B", "sparse-16B"]           # shared, smallest first
    assert rows["per-mapping"] == (0, "none", None, False)
    assert rows["pageinfo-count"] == (8 * 12 * 65536, "8 B/frame", None, False)
    assert rows["xen-4.1-dense"] == (8 * (0x140000 // 512), "8 B/2 MiB to max_pfn", None, False)
    assert rows["xen-4.1-dense-pdx"] == (8 * (0xc0000 // 512), "8 B/2 MiB to max_pdx (mask)",
                                         None, False)
    n_sp = len(m.spdx_with_ram())
    assert rows["sparse-8B"] == (3 * 512 * 8, "8 B/2 MiB with RAM", 8 * n_sp, True)
    assert rows["sparse-16B"] == (3 * 512 * 16, "16 B/2 MiB with RAM", 16 * n_sp, True)


# --------------------------------------------------------------------------
# The registry: default, colours; a design registered for one test

@pytest.fixture
def extra_design():
    """Two designs registered for one test (no colour of their own), removed after it."""
    made = []
    for name in ("t-extra-1", "t-extra-2"):
        cls = type("T" + name.replace("-", ""), (SuperpageDesign,),
                   {"name": name, "description": f"{name} for a test",
                    "metadata_bytes": lambda self: 4096})
        REGISTRY[name] = cls
        made.append(cls)
    yield made
    for cls in made:
        del REGISTRY[cls.name]


def test_default_design():
    assert default_design() == "xen-4.1"
    assert sum(cls.default for cls in REGISTRY.values()) == 1


def test_colours(extra_design):
    assert design_color("xen-4.1") == "#1f77b4" and design_color("per-mapping") == "#d62728"
    own = {cls.color for cls in REGISTRY.values() if cls.color}
    free = [c for c in PALETTE if c not in own]
    uncoloured = [n for n, c in REGISTRY.items() if not c.color]
    assert design_color("t-extra-1") == free[uncoloured.index("t-extra-1")]
    assert design_color("t-extra-2") == free[uncoloured.index("t-extra-2")]
    assert design_color("t-extra-1") != design_color("t-extra-2")


def test_a_registered_design_has_its_default_row(extra_design):
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none")
    rows = {r.name: r for r in metadata_rows(m.design_host)}
    r = rows["t-extra-1"]
    assert (r.bytes, r.unit, r.description, r.shared) == (4096, "8 B/2 MiB with RAM",
                                                           "t-extra-1 for a test", False)
    assert r.color == design_color("t-extra-1")
    # its own rows come before the shared ones
    names = list(rows)
    assert names.index("t-extra-2") < names.index("sparse-8B")


# --------------------------------------------------------------------------
# xensim designs

def test_catalog_lists_the_registry_in_order():
    c = catalog()
    assert [d.name for d in c.designs] == list(design_names())
    x = next(d for d in c.designs if d.name == "xen-4.1")
    assert (x.words_in, x.word_names, x.supports_mark, x.buggy, x.default, x.doc) == (
        "spage_table", ["word"], True, False, True, "docs/designs/xen-4.1.md")
    s = next(d for d in c.designs if d.name == "sketch")
    assert (s.supports_mark, s.buggy, s.default) == (False, True, False)


def test_cli_designs(capsys):
    assert main(["designs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Superpage refcount designs"
    names = [ln.split()[0] for ln in lines[3:]]
    assert names == list(design_names())
    assert "xen-4.1 (default)" in lines[3 + names.index("xen-4.1")]
    assert main(["designs", "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in got["designs"]] == list(design_names())


def test_the_default_config_names_every_built_in_design():
    """configs/default.yaml's comment on hypervisor.superpage lists the built-in designs
    (a new design's module adds itself to the registry; this says the comment must follow)
    and its compare runs every one of them."""
    from pathlib import Path
    from xensim.config import default_config
    text = (Path(__file__).resolve().parents[2] / "configs" / "default.yaml").read_text()
    head = "# The superpage reference-counting design:"
    block = text[text.index(head):text.index("  superpage:", text.index(head))]
    words = block.replace("#", " ").replace(",", " ").split()
    built_in = [n for n, c in REGISTRY.items() if c.__module__.startswith("xensim.designs.")]
    assert [w for w in words if w in built_in] == built_in
    assert default_config().designs() == built_in
