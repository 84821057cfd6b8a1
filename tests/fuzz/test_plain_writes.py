"""The batch check of a batch of ordinary writes (xensim.fuzz._plain_writes): the property
it relies on, that it ends as the per-request loop does, and that it still catches a batch
done at once that differs.

The property (Xen's do_mmu_update, 4.1-4.22: a request into a frame that is not a page
table takes it writable, writes, puts it back): an ordinary write's effect besides its
own entry depends neither on its index and value nor on the frame's contents.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xensim import (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op, MMUEXT_PIN_L1_TABLE,
                    MMUEXT_UNPIN_TABLE, MmuextOp, MmuUpdate)
from xensim.fuzz import FuzzViolation, Fuzzer, Setup
from xensim.fuzz._plain_writes import ordinary_writes, plain_writes_stepwise
from xensim.mem._page_info import PGC_allocated, PGC_count_mask, PGC_state_inuse, PGT_writable_page
from xensim.xen.accel import PlainWriteBatch

from conftest import _same, full_state, populate, ptr, small_machine

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TABLE = 0x10
#: what the frame written may be (none of them a live page table)
STATE = st.sampled_from(["fresh", "ref", "writable", "writable2", "former-l1", "foreign",
                         "free", "given-up", "top"])
CONTENTS = st.one_of(st.just({}), st.dictionaries(st.integers(0, 511),
                                                  st.integers(1, (1 << 64) - 1), max_size=6))
WRITE = st.tuples(st.one_of(st.integers(0, 15), st.integers(0, 511)), st.one_of(st.just(0), st.integers(0, (1 << 64) - 1)),
                  st.sampled_from([0, 2]))


def machine(state: str):
    """A guest owning frames 0..511 and another domain; frame ``TABLE`` (or the other's, or a
    free one) in ``state``: (machine, guest, the frame)."""
    m = small_machine()
    g = m.create_domain("guest", 2048)
    o = m.create_domain("other", 16)
    populate(m, g, [0], 9)
    refs, frame = m.refs, TABLE
    if state == "ref":
        refs.get_page(TABLE, g)
    elif state in ("writable", "writable2"):
        for _ in range(1 + (state == "writable2")):
            refs.get_page_and_type(TABLE, g, PGT_writable_page)
    elif state == "former-l1":
        done = [0]
        reqs = [MmuUpdate(ptr(TABLE, i), ((0x100 + i) << 12) | 0x67) for i in range(4)]
        assert m.hypercall(g, HYPERVISOR_mmu_update, reqs, done) == 0
        for cmd in (MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE):
            assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(cmd, TABLE)], [0]) == 0
    elif state == "foreign":
        frame = populate(m, o, [0], 0)[0]
    elif state == "free":
        frame = 0x1000
    elif state == "given-up":
        refs.get_page(TABLE, g)
        refs.clear_allocated(TABLE)
        refs.put_page(TABLE)
    elif state == "top":
        m.frame_table.set_count_info(TABLE, PGC_state_inuse | PGC_allocated | (PGC_count_mask - 2))
    assert not m.pt.live_level(m.mfn_to_page(frame))
    return m, g, frame


def write(m, g: int, frame: int, req) -> int:
    i, v, cmd = req
    done = [0]
    return m.hypercall(g, HYPERVISOR_mmu_update, [MmuUpdate(ptr(frame, i, cmd), v)], done), done[0]


def fill(m, frame: int, contents: dict) -> None:
    for i, v in contents.items():
        m.mem.write(frame, i, v)


@SETTINGS
@given(STATE, st.lists(st.tuples(CONTENTS, WRITE), min_size=2, max_size=8))
def test_an_ordinary_write_does_the_same_whatever_its_entry(state, writes):
    """Xen's do_mmu_update (4.1), a request into a frame that is not a page table: from the
    same machine, ordinary writes (any index, value, command, and any contents of the
    frame before) return the same and leave the same machine besides the frame's
    contents, statistics and stamps included; the contents are the old ones with the
    entry written if it succeeded, unchanged if not."""
    m, g, frame = machine(state)
    runs = []
    for contents, w in writes:
        c = copy.deepcopy(m)
        fill(c, frame, contents)
        old = c.mem.table(frame).copy()
        rc = write(c, g, frame, w)
        if rc == (0, 1):
            old[w[0]] = w[1]
        assert (c.mem.table(frame) == old).all()
        c.mem.write_many(frame, np.arange(512), np.zeros(512, dtype=np.uint64))
        runs.append((rc, full_state(c)))
    for rc, state_after in runs[1:]:
        assert rc == runs[0][0]
        _same("the machines besides the frame's contents", runs[0][1], state_after)


@settings(SETTINGS, max_examples=60)
@given(STATE, CONTENTS, st.lists(WRITE, min_size=0, max_size=24),
       st.sampled_from(["ordinary", "another frame", "machphys"]))
def test_the_shortcut_ends_as_the_loop(state, contents, writes, tail):
    """plain_writes_stepwise against the call by its per-request loop (stepwise): the same
    (rc, done) and the same machine, for ordinary writes and for calls where the shortcut
    does not apply (a request into another frame, an M2P update: then the loop runs the
    rest). The statistics are not compared (the batch check does not: the requests written
    took and dropped their references uncounted)."""
    m, g, frame = machine(state)
    fill(m, frame, contents)
    reqs = [[ptr(frame, i, cmd), v] for i, v, cmd in writes]
    if tail == "another frame":
        reqs.append([ptr(TABLE + 1, 3), 0x1234])
    elif tail == "machphys":
        reqs.insert(len(reqs) // 2, [(TABLE << 12) | 1, 7])
    op = {"op": "mmu_update", "domain": "guest", "reqs": reqs}
    doms = {"dom0": 0, "guest": g}
    from xensim.fuzz._journal import CallJournal
    from xensim.fuzz._ops import execute
    out = []
    for shortcut in (True, False):
        c = copy.deepcopy(m)
        j = CallJournal(c)
        with c.events.stepwise():
            if shortcut:
                got = plain_writes_stepwise(c, j, doms, op)
            else:
                r = execute(c, doms, op)
                got = (r.rc, r.done)
        j.detach()
        out.append((got, compared(c), c.mem.table(frame).tobytes()))
    assert out[0][0] == out[1][0]
    assert out[0][2] == out[1][2]
    _same("the machines", out[0][1], out[1][1])


def compared(m) -> tuple:
    """What the batch check compares of a machine (conftest.full_state without the
    statistics; the frames' contents, not whether a frame of zeros is stored)."""
    snap = m.snapshot()
    tables = tuple(sorted((k, v) for k, v in snap.tables if any(v)))
    return (snap.frames, snap.stamps, tables, snap.records, sorted(m.domains),
            m.refs.tlbflush_clock, sorted(m.refs.tlbflush_time.items()),
            [(d.domid, d.p2m.count) for d in m.domains.values()], m.m2p.count,
            sorted(m.pt.live.items()), list(m.violations))


def test_ordinary_writes_is_the_class():
    m, g, frame = machine("fresh")
    assert ordinary_writes(m, [[ptr(frame, 1), 5], [ptr(frame, 2, 2), 6]]) == (frame, [1, 2], [5, 6])
    assert ordinary_writes(m, [[ptr(frame, 1), 5], [ptr(frame + 1, 2), 6]]) is None
    assert ordinary_writes(m, [[ptr(frame, 1) | 1, 5]]) is None          # MMU_MACHPHYS_UPDATE
    assert ordinary_writes(m, [[ptr(frame, 1), -1]]) is None              # not a 64-bit value
    assert ordinary_writes(m, [[ptr(frame, 1), 1 << 64]]) is None
    assert ordinary_writes(m, [[ptr(0x4000_0000, 1), 1]]) is None         # not a valid frame


def _fill_op(f, n: int):
    g = f.live_guests()[0]
    mfn = g.kernel.superpage_mfns(0, 6)[5] + 3
    reqs = [[(mfn << 12) | i * 8, (0x1000 * i) | 1] for i in range(n)]
    return mfn, {"op": "mmu_update", "domain": g.name, "reqs": reqs}


@pytest.mark.parametrize("wrong", ["drops the last write", "writes one entry wrong",
                                   "stops one short"])
def test_the_batch_check_catches_a_plain_write_batch_that_differs(monkeypatch, wrong):
    """PlainWriteBatch done wrong, each way past the requests the check runs: the batch
    check still finds the machine (or the count) differs from the per-request loop's."""
    real = PlainWriteBatch.apply

    def broken(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok):
        if wrong == "stops one short":
            rc = real(self, m, reqs[:-1], done, pt_owner, pg_owner, normal_ok, machphys_ok)
            return rc
        rc = real(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok)
        last = reqs[-1]
        table, i = last.ptr >> 12, (last.ptr & 0xFFF) >> 3
        m.mem.write(table, i, 0 if wrong == "drops the last write" else last.val ^ 2)
        return rc
    f = Fuzzer(Setup(design="none"), "inject")
    f.start()
    monkeypatch.setattr(PlainWriteBatch, "apply", broken)
    mfn, op = _fill_op(f, 16)
    with pytest.raises(FuzzViolation) as e:
        f.step(op)
    assert e.value.kind == "batch"
    if wrong == "stops one short":
        assert e.value.key == "count" and "rc 0 done 15/16" in e.value.detail
    else:
        assert e.value.key == "state" and f"contents of frame {mfn:#x}[15]" in e.value.detail
