"""The incremental auditor (xen.IncrementalAuditor) against the full one (xen.audit).

Per API: campaigns where both run after every call and must agree (every design,
faithful mode and releases too); corruptions behind the simulator's back, caught by
both with the same differences; the full audit every N checks; a design implementing
only ``expect`` (the default ``expect_superpages``); the fuzzer's options.
"""

from __future__ import annotations

import random

import pytest

from xensim import Machine, MemoryMap
from xensim.designs import Xen41, design_names
from xensim.designs import SuperpageDesign
from xensim.fuzz import Fuzzer, FuzzViolation, Setup, keep_going
from xensim.guest import DIRECTMAP_BASE, GuestKernel
from xensim.mem import PGT_count_mask, PGT_type_mask, PGT_writable_page, SGT_dynamic
from xensim.xen import (IncrementalAuditor, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, audit, make_pte,
                        pte_mfn)

GiB = 1 << 30


def run_both(setup: Setup, seed: str, calls: int, tolerate=None) -> Fuzzer:
    """A fuzzed episode checked with both auditors after every call (a disagreement is a
    FuzzViolation of kind audit-disagreement, and fails the test)."""
    f = Fuzzer(setup, random.Random(seed), tolerate=tolerate)
    f.start()
    while f.calls < calls:
        f.random_call()
    f.finish()
    return f


# -- both after every call ----------------------------------------------------------------
@pytest.mark.parametrize("design", design_names())
def test_both_agree_on_every_call_of_a_campaign(design):
    f = run_both(Setup(design=design, audit="both"), f"both/{design}", 1200)
    assert f.calls >= 1200 and f.checks > 600
    assert f.full_audits == f.checks + 1                 # every check, and the teardown's
    assert f.auditor.checks == f.checks
    assert f.auditor.frames_checked > 0 and not f.tolerated


@pytest.mark.parametrize("design,version", [("xen-4.1", "4.1"), ("per-mapping", "4.5"),
                                            ("superpage-info", "4.1")])
def test_both_agree_in_faithful_mode(design, version):
    """Faithful mode's known bugs break the counts: both auditors see the same breakage
    (an episode ends at its first audit violation, so several episodes are run)."""
    setup = Setup(design=design, version=version, faithful=True, audit="both")
    checks, ends = 0, []
    for k in range(12):
        f = Fuzzer(setup, random.Random(f"faithful/{design}/{k}"), tolerate=keep_going)
        try:
            f.start()
            while f.calls < 300:
                f.random_call()
            ends.append(None)
        except FuzzViolation as v:
            ends.append(v.kind)
        assert "audit-disagreement" not in [sig[0] for sig in f.tolerated] + ends
        assert f.auditor.checks == f.checks and f.full_audits == f.checks
        checks += f.checks
        if checks > 600:
            break
    assert checks > 600
    assert "audit" in ends                  # both found the same broken counts, at least once


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7"])
def test_both_agree_on_older_releases(version):
    f = run_both(Setup(design="xen-4.1", version=version, audit="both"), f"rel/{version}", 500)
    assert f.full_audits == f.checks + 1 and f.checks > 250


# -- corruptions behind the simulator's back ------------------------------------------------------
class Layout:
    """One guest of a 64 MiB machine (PDX none: page == mfn): superpage 0x200 mapped
    read-write at VA slot 0 of an L2 table, frames 0x40 (RW) and 0x41 (RO) mapped by an L1."""

    def __init__(self, design: str = "xen-4.1"):
        self.m = m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
        self.d = m.create_domain("guest", 4 * 512 + 64)
        self.k = k = GuestKernel(m, self.d)
        assert k.populate(0, 4 * 512) == 4 and k.build() == 0
        assert k.map_superpages(DIRECTMAP_BASE + GiB, [0x200], True) == 0
        assert k.map_pages(DIRECTMAP_BASE + 2 * GiB, [0x40], writable=True) == 0
        assert k.map_pages(DIRECTMAP_BASE + 2 * GiB + 4096, [0x41], writable=False) == 0
        self.l1 = next(mfn for (level, _), mfn in k.tables.items() if level == 1)
        self.inc = IncrementalAuditor(m)
        assert self.inc.check().ok and audit(m).ok

    def both(self) -> tuple[list[str], list[str]]:
        return (sorted(map(str, self.inc.check().differences)),
                sorted(map(str, audit(self.m).differences)))


def test_count_info_corrupted():
    lay = Layout()
    ft = lay.m.frame_table
    ci = ft.count_info(0x40)                      # allocated + the L1 entry's reference
    ft.set_count_info(0x40, ci + 1)
    inc, full = lay.both()
    assert inc == full == ["mfn 0x40 count_info.count: expected 2, actual 3"]


def test_type_info_corrupted():
    lay = Layout()
    ft = lay.m.frame_table
    ft.set_type_info(0x41, ft.type_info(0x41) + 1)      # an RO mapping holds no typed reference
    inc, full = lay.both()
    assert inc == full == ["mfn 0x41 type_info.count: expected 0, actual 1"]


def test_owner_corrupted():
    lay = Layout()
    lay.m.frame_table.set_owner(0x300, 0)               # a frame of the mapped superpage
    inc, full = lay.both()
    assert inc == full == [f"mfn 0x300 owner: expected {lay.d}, actual 0"]


def test_superpage_word_corrupted():
    lay = Layout()
    sp = lay.m.spage_table
    word = sp.read(1)                                   # superpage 0x200: DYNAMIC | 1
    sp.write(1, word + 1)
    inc, full = lay.both()
    assert inc == full == [f"mfn 0x200 superpage word (store entry 1): expected "
                           f"('{hex(word)}',), actual ('{hex(word + 1)}',)"]


def test_page_table_entry_written_into_memory():
    """An RO L1 entry made RW behind the hypervisor's back: frame 0x41 lacks the
    writable-type reference the entry now stands for."""
    lay = Layout()
    m = lay.m
    mem = m.mem.table(lay.l1)
    i = next(int(j) for j in range(512) if mem[j] & _PAGE_PRESENT and pte_mfn(int(mem[j])) == 0x41)
    m.mem.write(lay.l1, i, make_pte(0x41, _PAGE_PRESENT | _PAGE_RW))
    inc, full = lay.both()
    assert inc == full == ["mfn 0x41 type_info.count: expected 1, actual 0",
                           "mfn 0x41 type_info.type: expected writable, actual none"]


def _pse_over_the_tables(lay: Layout) -> list[str]:
    """Write a PSE entry behind the hypervisor's back over the superpage of the guest's
    page tables (L4 0x800, L3 0x801, L2s 0x802-0x803, L1 0x804); what is then wrong."""
    m = lay.m
    assert not m.mem.table(0x802)[1] & _PAGE_PRESENT
    m.mem.write(0x802, 1, make_pte(0x800, _PAGE_PRESENT | _PAGE_RW | _PAGE_PSE))
    want = [f"mfn 0x800 superpage word (store entry 4): expected ('{hex(SGT_dynamic | 1)}',), "
            f"actual ('0x0',)"]
    for mfn, type, count in ((0x800, "l4", 3), (0x801, "l3", 2), (0x802, "l2", 2),
                             (0x803, "l2", 2), (0x804, "l1", 2)):
        want += [f"mfn {mfn:#x} count_info.count: expected {count + 1}, actual {count}",
                 f"mfn {mfn:#x} type: expected {type}, actual writable",
                 f"mfn {mfn:#x} type_info.count: expected {count}, actual {count - 1}",
                 f"mfn {mfn:#x} type_info.type: expected writable, actual {type}"]
    return want + [f"mfn 0x9ff referenced by: expected dom{lay.d}'s own frame, actual owner "
                   f"domNone"] * 2


def test_a_writable_superpage_over_the_page_tables_written_into_memory():
    """Each table's type clashes with the mapping's writable one and its counts are one
    short, the superpage word is missing, the superpage's last frame is not the guest's.
    The incremental auditor compares those few frames one by one, and recounts them the
    full audit's way, which reports, as they differ."""
    lay = Layout()
    want = _pse_over_the_tables(lay)
    inc, full = lay.both()
    assert inc == full == sorted(want)


def test_a_type_clash_where_the_words_agree():
    """The same, with the tables' words made what the mapping alone wants: of them only
    the clashes are left, which the frame-by-frame comparison must not pass."""
    lay = Layout()
    want = _pse_over_the_tables(lay)
    ft = lay.m.frame_table
    for mfn in range(0x800, 0x805):
        ft.set_count_info(mfn, ft.count_info(mfn) + 1)
        ti = ft.type_info(mfn)
        count = (ti & PGT_count_mask) + 1
        ft.set_type_info(mfn, ti & ~(PGT_type_mask | PGT_count_mask) | PGT_writable_page | count)
    want = [w for w in want if " type: " in w or " superpage word " in w
            or not w.startswith("mfn 0x80")]
    inc, full = lay.both()
    assert inc == full == sorted(want)
    assert len(want) == 8                       # the word, 5 clashes, the last frame twice


def test_a_clean_check_after_a_corruption_is_undone():
    lay = Layout()
    ft = lay.m.frame_table
    ci = ft.count_info(0x40)
    ft.set_count_info(0x40, ci + 1)
    assert not lay.inc.check().ok
    ft.set_count_info(0x40, ci)
    assert lay.inc.check().ok and lay.inc.checks == 3


# -- the full audit every N ------------------------------------------------------------------
def test_full_audit_every_n_checks():
    f = Fuzzer(Setup(audit="incremental", full_audit_every=7), random.Random("every"))
    f.start()
    while f.calls < 300:
        f.random_call()
    assert f.checks > 100 and f.full_audits == f.checks // 7
    f.finish()
    assert f.full_audits == f.checks // 7 + 1            # and one at the end


def test_full_mode_has_no_incremental_auditor():
    f = Fuzzer(Setup(audit="full"), random.Random("full"))
    f.start()
    while f.calls < 50:
        f.random_call()
    assert f.auditor is None and f.full_audits == f.checks > 10


# -- a design that implements only expect ----------------------------------------------------------
class OnlyExpect(Xen41):
    """Xen 4.1's design as a user might write it: expect (over every mapped or marked
    superpage), and the interface's default expect_superpages."""
    expect_superpages = SuperpageDesign.expect_superpages

    def expect(self, exp, pse):
        Xen41.expect_superpages(self, exp, pse, set(pse) | set(self.host.marks()))


def test_the_default_expect_superpages_audits_correctly():
    f = Fuzzer(Setup(audit="both"), random.Random("only-expect"))
    f.m.superpage = OnlyExpect(f.m.design_host)
    f.start()
    while f.calls < 400:
        f.random_call()
    f.finish()
    assert f.checks > 200 and f.full_audits == f.checks + 1


def test_the_default_expect_superpages_catches_a_corrupted_word():
    lay = Layout()
    lay.m.superpage = OnlyExpect(lay.m.design_host)
    lay.inc = IncrementalAuditor(lay.m)
    lay.m.spage_table.write(1, 0)
    inc, full = lay.both()
    assert inc == full == ["mfn 0x200 superpage word (store entry 1): expected "
                           f"('{hex(SGT_dynamic | 1)}',), actual ('0x0',)"]


# -- the fuzzer's options ------------------------------------------------------------------------
def test_fuzz_audit_options(capsys):
    from xensim.cli import main
    from xensim.cli._fuzz import AUDIT_MODES as cli_modes
    from xensim.fuzz import AUDIT_MODES
    assert cli_modes == AUDIT_MODES == ("incremental", "full", "both")
    assert main(["fuzz", "--calls", "30", "--quiet", "--audit", "both"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("seed 0, audit both")
    assert main(["fuzz", "--calls", "30", "--full-audit-every", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "xensim: error: --full-audit-every: must be at least 0, got -1\n"


def test_other_contributors_are_asked_every_time():
    """A holder outside the page tables (an audit contributor): what it starts and stops
    holding is recounted though no word was written."""
    lay = Layout()
    m = lay.m
    held = []
    m.audit_contributors.append(lambda mm, exp: [exp.ref(mfn, lay.d) for mfn in held])
    held.append(0x40)
    inc, full = lay.both()
    assert inc == full == ["mfn 0x40 count_info.count: expected 3, actual 2"]
    assert m.refs.get_page(m.mfn_to_page(0x40), lay.d)          # it takes its reference
    assert lay.both() == ([], [])
    held.clear()                                                 # and forgets it
    inc, full = lay.both()
    assert inc == full == ["mfn 0x40 count_info.count: expected 2, actual 3"]


def test_isolation_since_reads_as_isolation():
    """A frame a live L1 entry maps handed to another domain behind the simulator's back:
    the auditors see its owner; both isolation checks name the same entry."""
    from xensim.fuzz import isolation, isolation_since
    lay = Layout()
    m = lay.m
    m.frame_table.set_owner(m.mfn_to_page(0x41), 0)
    assert not lay.inc.check().ok
    msg = isolation(m)
    assert msg is not None and msg.endswith("maps mfn 0x41 owned by dom0")
    assert isolation_since(m, lay.inc) == msg


def test_isolation_since_sees_a_marked_superpage_handed_over():
    """A frame of a marked superpage no entry maps, handed to dom0 behind the simulator's
    back: isolation_since, which looks only at the marks among what was recounted, names
    the mark as isolation does; a check later, with nothing recounted, it is silent."""
    from xensim.fuzz import isolation, isolation_since
    lay = Layout()
    m = lay.m
    sp = next(mfn for mfn in lay.k.superpage_mfns(0, 4) if mfn != 0x200)
    assert lay.k.mark_superpage(sp) == 0
    assert lay.inc.check().ok and isolation_since(m, lay.inc) is None
    m.frame_table.set_owner(m.mfn_to_page(sp + 7), 0)
    assert [str(d) for d in lay.inc.check().differences] == [
        f"mfn {sp + 7:#x} owner: expected {lay.d}, actual 0"]
    msg = f"dom{lay.d} marked superpage {sp:#x}, not all its own"
    assert isolation(m) == isolation_since(m, lay.inc) == msg
    assert lay.inc.check().ok and lay.inc.last_frames == set()
    assert isolation_since(m, lay.inc) is None and isolation(m) == msg


def test_a_disagreement_is_a_violation_of_its_own():
    """A write the incremental auditor never hears of (here: it is detached) is found by
    the full audit alone: with both, that is an audit-disagreement, not an audit finding."""
    from xensim.fuzz import sound_state
    lay = Layout()
    lay.inc.detach()
    ft = lay.m.frame_table
    ft.set_count_info(0x40, ft.count_info(0x40) + 1)
    kind, detail, key = sound_state(lay.m, lay.inc, full=True)
    assert (kind, key) == ("audit-disagreement", "incremental")
    assert detail == ("the full audit found 1 difference(s), the incremental 0; only in the "
                      "full: ['mfn 0x40 count_info.count: expected 2, actual 3']; only in the "
                      "incremental: -")
    assert sound_state(lay.m, lay.inc, full=False) is None       # it saw nothing
    assert sound_state(lay.m)[0] == "audit"                      # the full audit alone


# -- written runs kept as runs ---------------------------------------------------------------
def test_a_written_run_is_recounted_as_a_run():
    """Frames 0x310..0x317 of the mapped superpage and the free frames 0x900..0x903 written
    as two runs (FrameTable.slices): the check recounts those 12 frames, no more, and finds
    every miscount the full audit finds, in the same words (a count: allocated and the PSE run)."""
    lay = Layout()
    m, ft = lay.m, lay.m.frame_table
    ci, _, _ = ft.slices(m.mfn_to_page(0x310), 8)
    ci += 1
    ci, _, owner = ft.slices(m.mfn_to_page(0x900), 4)
    owner[2] = lay.d
    rep = lay.inc.check()
    assert rep.frames_checked == 12 and rep.total_differences == 9
    assert sorted(map(str, rep.differences)) == sorted(map(str, audit(m).differences))
    assert [str(d) for d in rep.differences if d.mfn == 0x317] == [
            "mfn 0x317 count_info.count: expected 2, actual 3"]
    assert lay.inc.last_frames == set(range(0x310, 0x318)) | set(range(0x900, 0x904))


def test_a_written_run_with_a_clean_check_after_it_is_undone():
    """A run corrupted and put back before the check: recounted, clean, and the next check
    recounts nothing."""
    lay = Layout()
    ci, _, _ = lay.m.frame_table.slices(lay.m.mfn_to_page(0x300), 512)
    ci += 1
    ci -= 1
    rep = lay.inc.check()
    assert rep.ok and rep.frames_checked == 512
    assert lay.inc.check().frames_checked == 0


def test_sole_domain():
    """The one domain whose live entries map a frame (or a superpage's PSE entries), None
    for a frame no entry maps."""
    lay = Layout()
    inc = lay.inc
    assert inc.sole_domain(0x40) == inc.sole_domain(0x41) == lay.d
    assert inc.sole_domain(0x200, pse=True) == lay.d
    assert inc.sole_domain(0x200) is None and inc.sole_domain(0x42) is None
    assert inc.sole_domain(0x40, pse=True) is None
