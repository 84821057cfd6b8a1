"""FrameMap (P2M/M2P) leaves and RangeSet runs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xensim import INVALID, FrameMap, RangeSet


class TestFrameMap:
    def test_linear_leaf_costs_one_word(self):
        f = FrameMap(4096)
        f.set_run(512, 0x4000, 512)
        assert f.get(512) == 0x4000 and f.get(1023) == 0x41ff and f.get(1024) == INVALID
        assert f.count == 512 and f._arrays == {}

    def test_a_4k_change_makes_an_array_and_folds_back(self):
        f = FrameMap(4096)
        f.set_run(0, 100, 512)
        f.clear(7)
        assert f.get(7) == INVALID and f.count == 511 and 0 in f._arrays
        f.set(7, 107)
        assert f._arrays == {} and f.get(7) == 107

    def test_runs_across_leaves(self):
        f = FrameMap(2048)
        f.set_run(500, 9, 30)
        assert [f.get(i) for i in (499, 500, 511, 512, 529, 530)] == [INVALID, 9, 20, 21, 38, INVALID]
        assert f.any_in_run(520, 4) and not f.any_in_run(530, 100)
        f.clear_run(500, 30)
        assert f.count == 0 and f._arrays == {}

    def test_bounds(self):
        f = FrameMap(512)
        assert f.get(512) == INVALID and f.get(-1) == INVALID
        with pytest.raises(IndexError):
            f.set(512, 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2047), st.integers(1, 1600), st.integers(-1, 5000)), max_size=12))
def test_framemap_equals_a_dict(ops):
    f, ref = FrameMap(2048), {}
    for i, n, v in ops:
        n = min(n, 2048 - i)
        f.set_run(i, v, n)
        for k in range(n):
            if v == INVALID:
                ref.pop(i + k, None)
            else:
                ref[i + k] = v + k
    assert f.count == len(ref)
    assert all(f.get(k) == ref.get(k, INVALID) for k in range(2048))
    got = {int(a): int(b) for idx, vals in f.items() for a, b in zip(idx, vals)}
    assert got == ref


class TestRangeSet:
    def test_merge_and_split(self):
        r = RangeSet()
        r.add(0, 10); r.add(20, 30); r.add(10, 20)
        assert r.runs() == [(0, 30)] and len(r) == 30
        r.remove(5, 25)
        assert r.runs() == [(0, 5), (25, 30)] and len(r) == 10
        assert 4 in r and 5 not in r and r.covers(25, 30) and not r.covers(4, 6)

    def test_double_add_and_bad_remove(self):
        r = RangeSet([(0, 10)])
        with pytest.raises(ValueError):
            r.add(5, 6)
        with pytest.raises(ValueError):
            r.remove(8, 12)
        assert r.runs() == [(0, 10)]
