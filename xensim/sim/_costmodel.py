"""The cost model: a modelled time for a run, from the operations it counted.

xensim counts operations; it does not time them (Python's time says nothing
about Xen's). A run's modelled time prices what it counted with three figures
(``cost_model:`` in a config; defaults justified in docs/cost-model.md):

``frame_atomic_ns``  one atomic read-modify-write of a frame's ``count_info`` or
                     ``type_info``: each get_page, put_page, get_page_type and
                     put_page_type call. Default 4.8 ns: benchmarks/c/superpage_ref.c
                     measures ~9.8 us for a 512-frame get+put of a superpage, i.e.
                     2,048 such operations (get_page, get_page_type, put_page_type,
                     put_page on each frame), cache-hot.
``cmpxchg_ns``       one locked cmpxchg on a design's superpage count word (each
                     slow or fast get/put of a superpage). Default 5.6 ns: the same
                     C reference's fast path (one cmpxchg to map, one to unmap) takes
                     ~11.2 ns per pair; an uncontended ``lock cmpxchg`` is ~18-25
                     cycles on current x86 cores.
``hypercall_ns``     the fixed cost of entering and leaving Xen, per hypercall.
                     Default 0: the model prices the refcount work only, as the C
                     reference measures it.

A design that keeps no count word (``metadata_bytes() == 0``: per-mapping, none) pays
no cmpxchg: its "transitions" are the 512 frame references themselves (none's are its
L1 table's: the table frame's typed reference and its 512 entries', all in RefStats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: defaults (see docs/cost-model.md): a config's ``cost_model:`` section defaults to them
from ..config import CMPXCHG_NS, FRAME_ATOMIC_NS, HYPERCALL_NS  # noqa: E402

#: the refcount primitives whose calls are priced as frame atomic operations
FRAME_OPS = ("get_page", "put_page", "get_page_type", "put_page_type")
#: the superpage count updates priced as one cmpxchg each
COUNT_UPDATES = ("slow_get", "slow_put", "fast_get", "fast_put")


@dataclass(frozen=True)
class Estimate:
    """What a run costs under a :class:`CostModel`."""
    frame_ops: int
    cmpxchg: int
    hypercalls: int
    ns: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CostModel:
    frame_atomic_ns: float = FRAME_ATOMIC_NS
    cmpxchg_ns: float = CMPXCHG_NS
    hypercall_ns: float = HYPERCALL_NS

    @classmethod
    def from_config(cls, c) -> "CostModel":
        return cls(c.frame_atomic_ns, c.cmpxchg_ns, c.hypercall_ns)

    def estimate(self, refcount: dict, superpage: dict, hypercalls: int,
                 has_count_word: bool = True) -> Estimate:
        """Price ``refcount`` (RefStats deltas), ``superpage`` (design stats deltas) and
        ``hypercalls`` (calls made)."""
        frame_ops = sum(int(refcount.get(k, 0)) for k in FRAME_OPS)
        cmpxchg = sum(int(superpage.get(k, 0)) for k in COUNT_UPDATES) if has_count_word else 0
        ns = (frame_ops * self.frame_atomic_ns + cmpxchg * self.cmpxchg_ns
              + hypercalls * self.hypercall_ns)
        return Estimate(frame_ops, cmpxchg, hypercalls, ns)

    def to_dict(self) -> dict:
        return asdict(self)
