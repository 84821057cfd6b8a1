"""XSA-224 and XSA-234 replayed as XTF's proofs of concept (andyhhp/xtf tests/xsa-224,
tests/xsa-234) with XTF's verdicts: the last call, MMUEXT_PIN_L1_TABLE of the frame, is
0 on a vulnerable Xen (faithful mode, 4.1-4.8: ``__gnttab_unmap_common_complete`` and
``replace_grant_va_mapping`` as released) and -EINVAL with the fixes (commits 4a79c29f67
and 16b1414de9; RELEASE-4.22.0's ``unmap_common_complete`` and ``replace_grant_pv_mapping``)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from xensim import audit, load_config
from xensim.fuzz import XTF_TESTS, execute, replay_config, xtf_config, xtf_poc

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _run(name: str, version: str, faithful: bool, audited: bool):
    setup, ops = xtf_poc(name, version, faithful)
    m, doms = setup.machine(), {"dom0": 0}
    rc = None
    for op in ops:
        rc = execute(m, doms, op).rc
        if audited:
            rep = audit(m)
            assert rep.ok, f"{op}: {rep}"
    return rc, m


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
def test_xsa224_gnttab_unmap_common_complete_drops_the_device_refs_twice_faithful_4_1_to_4_8(version):
    rc, m = _run("xsa-224", version, True, False)
    assert rc == 0                                       # XTF: "Fail: Vulnerable to XSA-224"
    assert [v.split(":")[0] for v in m.violations] == ["XSA-224"]
    assert not audit(m).ok


@pytest.mark.parametrize("version", ["4.1", "4.8"])
def test_xsa224_fixed_unmap_common_complete_puts_what_was_unmapped_4_22(version):
    rc, m = _run("xsa-224", version, False, True)
    assert rc == -errno.EINVAL and m.violations == []    # XTF: "Success: Not vulnerable"


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
def test_xsa234_replace_grant_va_mapping_checks_only_the_frame_faithful_4_1_to_4_8(version):
    rc, m = _run("xsa-234", version, True, False)
    assert rc == 0
    assert [v.split(":")[0] for v in m.violations] == ["XSA-234"]
    assert not audit(m).ok


@pytest.mark.parametrize("version", ["4.1", "4.8"])
def test_xsa234_fixed_replace_grant_pv_mapping_checks_present_and_rw_4_22(version):
    rc, m = _run("xsa-234", version, False, True)
    assert rc == -errno.EINVAL and m.violations == []


@pytest.mark.parametrize("name", XTF_TESTS)
def test_xsa_configs_are_the_xtf_proofs(name):
    """configs/xsa-224.yaml and xsa-234.yaml are what xtf_config writes; replayed with every
    fuzzer check, faithful (as shipped) stops at the bug, fixed ends clean with -EINVAL."""
    path = CONFIGS / f"{name}.yaml"
    assert path.read_text() == xtf_config(name)
    cfg = load_config(path)
    assert cfg.hypervisor.faithful
    bad = replay_config(cfg)
    assert bad.violation is not None and bad.violation.kind == "audit"
    assert "grant_table_op/unmap_grant_ref" in str(bad)
    cfg.hypervisor.faithful = False
    good = replay_config(cfg)
    assert good.violation is None and good.last == -errno.EINVAL
    assert str(good).endswith("no violation; the last returned -22 (EINVAL)")


@pytest.mark.parametrize("name", XTF_TESTS)
@pytest.mark.parametrize("version", ["4.22"])
def test_xsa224_xsa234_fixed_even_faithful_4_22(name, version):
    """The fixes (4a79c29f67, 16b1414de9) are in every release from 4.10: faithful mode
    reproduces the bugs only on the releases that had them."""
    rc, m = _run(name, version, True, True)
    assert rc == -errno.EINVAL and m.violations == []
