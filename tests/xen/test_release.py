"""The modelled releases (xen/_release.py): their order, which have PV superpages, and
which Xen an output says produced it (``release_label``); 4.22's options."""

from __future__ import annotations

import pytest

from xensim import ConfigError, Machine, MemoryMap
from xensim.config import parse_config
from xensim.xen import NEWEST_RELEASE, RELEASE_NAMES, RELEASES, Release, release_label

from conftest import MiB


def test_releases_in_order_and_4_22_the_newest():
    assert RELEASE_NAMES == ("4.1", "4.5", "4.7", "4.8", "4.22")
    assert list(RELEASES) == sorted(RELEASES) and NEWEST_RELEASE == Release.parse("4.22")
    assert Release.parse("4.22") > Release.parse("4.8") and str(Release.R4_22) == "4.22"
    with pytest.raises(ValueError, match="choose from 4.1, 4.5, 4.7, 4.8, 4.22"):
        Release.parse("4.10")


def test_pv_superpages_up_to_4_9_only():
    """56fff3e5e9 (4.10) removed PV superpages: 4.1-4.8 have them, 4.22 not."""
    assert [r.pv_superpages for r in RELEASES] == [True, True, True, True, False]


@pytest.mark.parametrize("design", ["xen-4.1", "per-mapping", "none"])
def test_release_label_says_hypothetical_on_4_22(design):
    """On 4.22 a superpage design runs as if merged into today's Xen: the machine is
    hypothetical and its label says so; ``none`` is Xen 4.22 itself; on 4.8 every
    design is 4.8's."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version="4.22",
                superpage=design)
    if design == "none":
        assert not m.hypothetical and m.release_label == "Xen 4.22"
        assert not m.allow_superpage
    else:
        assert m.hypothetical and m.allow_superpage
        assert m.release_label == (f"Xen 4.22, hypothetical: {design} as if merged into "
                                   f"today's Xen")
    old = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", superpage=design)
    assert old.release_label == "Xen 4.8" and not old.hypothetical
    assert release_label(Release.R4_22, False) == "Xen 4.22"


def test_4_22_has_no_allowsuperpage_option():
    cfg = parse_config('hypervisor: {version: "4.22", superpage: none}\n', "c.yaml")
    assert cfg.hypervisor.allow_superpage
    with pytest.raises(ConfigError) as e:
        parse_config('hypervisor:\n  version: "4.22"\n  allow_superpage: false\n', "c.yaml")
    assert "hypervisor.allow_superpage" in str(e.value)
    assert "has no allowsuperpage option" in str(e.value)


def test_pv_linear_pt_is_an_option_of_4_10_on():
    """3285e75dea (4.10): the pv-linear-pt option; before it, no option."""
    cfg = parse_config('hypervisor: {version: "4.22", pv_linear_pt: false}\n', "c.yaml")
    assert cfg.hypervisor.pv_linear_pt is False
    with pytest.raises(ConfigError) as e:
        parse_config('hypervisor: {version: "4.8", pv_linear_pt: false}\n', "c.yaml")
    assert "hypervisor.pv_linear_pt" in str(e.value) and "no pv-linear-pt option" in str(e.value)


def test_figures_name_the_release():
    """The figures' titles: the release, and on 4.22 the hypothetical designs by name."""
    from xensim.plot._common import release_text
    assert release_text("4.8", ["xen-4.1", "none"]) == "Xen 4.8"
    assert release_text("4.22", ["none"]) == "Xen 4.22"
    assert release_text("4.22", ["xen-4.1", "none"]) == (
        "Xen 4.22 (xen-4.1 hypothetical: as if merged into today's Xen)")
