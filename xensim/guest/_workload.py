"""Workloads: seeded, reproducible sequences of guest operations (docs/workloads.md).

A workload is a generator of :class:`Op` (a domain's name, an operation and
its arguments) that depends only on the config and the seed, never on what
the machine answers: every design of a comparison sees the same sequence.
:func:`apply` performs one operation through the domain's
:class:`~xensim._guest.GuestKernel`, which acts only through hypercalls.

Operations name superpages by their index in the domain's memory (superpage
``i`` is GPFNs ``[512 i, 512 i + 512)``), and virtual addresses by *slot*:

* superpage slot ``s``: the 2 MiB at ``DIRECTMAP_BASE + s * 2 MiB`` (L2 entries);
* 4 KiB window ``w``: the 2 MiB at ``SMALL_BASE + w * 2 MiB``, whose L1 entry
  ``f`` maps frame ``f`` of a superpage (``map-4k`` maps frames
  ``[frame, frame + count)`` of the superpage at the same offsets).

=============  ==============================================================
``map``        map superpages ``superpage ..+count`` at slots ``slot ..+count``
               (L2 PSE entries, read-only or writable)
``unmap``      clear slots ``slot ..+count``
``remap``      rewrite slots ``slot ..+count`` read-only <-> writable
``map-4k``     map frames of a superpage with 4 KiB L1 entries in window ``slot``
``unmap-4k``   clear them; ``remap-4k`` flips them read-only <-> writable
``mark``       MMUEXT_MARK_SUPER superpages ``superpage ..+count``; ``unmark``: UNMARK
``balloon-out``  give the 512 frames of each superpage back (decrease_reservation)
``balloon-in``   take them back as one 2 MiB extent (populate_physmap, order 9)
``grant``      (a frontend) write grant entry ``slot``: ``peer`` may map frame ``frame``
               of superpage ``superpage``, read-only unless writable
``end-grant``  (a frontend) revoke grant entry ``slot``
``map-grant``  (a backend) map ``peer``'s grant ``superpage`` (the ref) at frame
               ``frame`` of 4 KiB window ``slot`` (GNTTABOP_map_grant_ref, a host mapping)
``unmap-grant``  (a backend) unmap it (GNTTABOP_unmap_grant_ref)
=============  ==============================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from .._errors import ConfigError
from ..config import MAX_SLOTS, SLOT_RUN_OPS, SUPERPAGE_BYTES, WorkloadConfig
from ._guest import DIRECTMAP_BASE, GuestKernel
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES, SUPERPAGE_SHIFT

#: the 4 KiB windows start 256 GiB into the direct map (after every superpage slot)
SMALL_BASE = DIRECTMAP_BASE + (MAX_SLOTS << SUPERPAGE_SHIFT)

@dataclass(frozen=True, slots=True)
class Op:
    """One guest operation. Unused arguments stay at their defaults."""
    domain: str
    op: str
    superpage: int = 0
    slot: int = 0
    frame: int = 0
    count: int = 1
    writable: bool = True
    #: the other domain of a grant op (the grantee of ``grant``, the granter of ``map-grant``)
    peer: str = ""

    def key(self) -> tuple:
        return (self.domain, self.op, self.superpage, self.slot, self.frame, self.count,
                self.writable, self.peer)

    def __str__(self) -> str:
        rw = "rw" if self.writable else "ro"
        n = f" x{self.count}" if self.count != 1 else ""
        if self.op == "map":
            return f"{self.domain}: map superpage {self.superpage}{n} at slot {self.slot} {rw}"
        if self.op in ("unmap", "remap"):
            return f"{self.domain}: {self.op} slot {self.slot}{n}" + (f" {rw}" if self.op == "remap" else "")
        if self.op.endswith("-4k"):
            what = f"superpage {self.superpage} " if self.op == "map-4k" else ""
            return (f"{self.domain}: {self.op} {what}frames {self.frame}..{self.frame + self.count - 1} "
                    f"window {self.slot}" + ("" if self.op == "unmap-4k" else f" {rw}"))
        if self.op == "grant":
            return (f"{self.domain}: grant {self.slot} to {self.peer}: frame {self.frame} of "
                    f"superpage {self.superpage} {rw}")
        if self.op == "end-grant":
            return f"{self.domain}: end grant {self.slot} to {self.peer}"
        if self.op == "exec":
            return (f"{self.domain}: exec a process mapping superpage {self.superpage}{n} "
                    f"with 4 KiB pages {rw}")
        if self.op == "exit":
            return f"{self.domain}: exit the process"
        if self.op in ("map-grant", "unmap-grant"):
            return (f"{self.domain}: {self.op} {self.peer}'s grant {self.superpage} at window "
                    f"{self.slot} frame {self.frame}" + (f" {rw}" if self.op == "map-grant" else ""))
        return f"{self.domain}: {self.op} superpage {self.superpage}{n}"


#: the grant ops (split-driver), and those that map into a 4 KiB window
GRANT_OPS = ("grant", "end-grant", "map-grant", "unmap-grant")


@dataclass
class DomainSpec:
    name: str
    memory: int

    @property
    def superpages(self) -> int:
        return self.memory // SUPERPAGE_BYTES

    @property
    def pages(self) -> int:
        return self.memory >> PAGE_SHIFT


@dataclass
class Layout:
    """The virtual addresses a domain's workload uses: its page tables are built for
    them before the run, so that the run itself creates no table."""
    slots: set[int] = field(default_factory=set)          # superpage slots
    windows: set[int] = field(default_factory=set)        # 4 KiB windows
    #: page-table frames of the largest process an ``exec`` builds (L4, L3, L2, its L1s)
    process: int = 0

    def add(self, op: Op) -> None:
        if op.op == "exec":
            self.process = max(self.process, 3 + op.count)
        elif op.op in SLOT_RUN_OPS:
            self.slots.update(range(op.slot, op.slot + op.count))
        elif op.op.endswith("-4k") or op.op == "map-grant":
            self.windows.add(op.slot)

    def table_vas(self) -> list[tuple[int, int]]:
        """(va, level) of every L2 and L1 table needed, one va per table."""
        l2 = sorted({s >> 9 for s in self.slots})
        out = [(DIRECTMAP_BASE + (k << 30), 2) for k in l2]
        out += [(SMALL_BASE + (w << SUPERPAGE_SHIFT), 1) for w in sorted(self.windows)]
        return out

    def pool_pages(self, fallback: bool = False, vcpus: int = 1) -> int:
        """Page-table frames: the L4, the L3s (one per 512 GiB of the direct map used, at
        least one), the L2s and the L1s (and their L2s), spare 2; ``fallback`` (no PV
        superpages): one L1 table more per superpage slot; several ``vcpus``: a user L4
        each."""
        l2 = len({s >> 9 for s in self.slots}) + len({w >> 9 for w in self.windows})
        l3 = len({s >> 18 for s in self.slots} | {(MAX_SLOTS + w) >> 18 for w in self.windows})
        return (1 + max(l3, 1) + l2 + len(self.windows) + 2
                + (len(self.slots) if fallback else 0) + (vcpus if vcpus > 1 else 0)
                + self.process)


def slot_va(slot: int) -> int:
    return DIRECTMAP_BASE + (slot << SUPERPAGE_SHIFT)


def window_va(window: int, frame: int = 0) -> int:
    return SMALL_BASE + (window << SUPERPAGE_SHIFT) + (frame << PAGE_SHIFT)


# --------------------------------------------------------------------------
# Performing one operation
# --------------------------------------------------------------------------

def apply(op: Op, k: GuestKernel) -> bool:
    """Perform ``op`` through guest kernel ``k``; True if every hypercall succeeded.

    A misuse the guest kernel itself refuses (mapping a ballooned-out superpage,
    remapping an empty slot) raises :class:`~xensim._guest.GuestError`.
    """
    if k.nr_vcpus > 1:                  # the vCPUs take the operations in turn
        k.ops_run += 1
        if k.switch_to((k.ops_run - 1) % k.nr_vcpus) != 0:
            return False
    o = op.op
    gfn = op.superpage * SUPERPAGE_PAGES
    if o == "map":
        return k.map_superpages(slot_va(op.slot), k.superpage_mfns(gfn, op.count),
                                op.writable) == 0
    if o == "unmap":
        return k.unmap(slot_va(op.slot), op.count) == 0
    if o == "remap":
        return k.remap(slot_va(op.slot), op.writable, op.count) == 0
    if o == "map-4k":
        mfns = [k.mfn(gfn + f) for f in range(op.frame, op.frame + op.count)]
        return k.map_pages(window_va(op.slot, op.frame), mfns, op.writable) == 0
    if o == "unmap-4k":
        return k.unmap(window_va(op.slot, op.frame), op.count, superpages=False) == 0
    if o == "remap-4k":
        return k.remap(window_va(op.slot, op.frame), op.writable, op.count, superpages=False) == 0
    if o in ("mark", "unmark"):
        ok = True
        for mfn in k.superpage_mfns(gfn, op.count):
            rc = k.mark_superpage(mfn) if o == "mark" else k.unmark_superpage(mfn)
            ok = ok and rc == 0
        return ok
    if o == "balloon-out":
        gfns = list(range(gfn, gfn + op.count * SUPERPAGE_PAGES))
        return k.balloon_out(gfns) == len(gfns)
    if o == "balloon-in":
        return k.populate(gfn, op.count * SUPERPAGE_PAGES, superpages=True) == op.count
    if o == "exec":
        return k.exec_process(k.superpage_mfns(gfn, op.count), op.writable) == 0
    if o == "exit":
        return k.exit_process() == 0
    if o == "grant":
        return k.grant_access(op.slot, k.domid_of(op.peer), k.mfn(gfn + op.frame), not op.writable)
    if o == "end-grant":
        return k.end_access(op.slot)
    if o == "map-grant":
        return k.map_grant(k.domid_of(op.peer), op.superpage, window_va(op.slot, op.frame),
                           not op.writable) == 0
    if o == "unmap-grant":
        return k.unmap_grant(k.domid_of(op.peer), op.superpage, window_va(op.slot, op.frame)) == 0
    raise ValueError(f"unknown guest operation {o!r}")


# --------------------------------------------------------------------------
# The workloads
# --------------------------------------------------------------------------

class Workload:
    """A workload bound to its domains: ``ops(seed)`` yields the same sequence for a seed."""

    def __init__(self, cfg: WorkloadConfig, domains: list[DomainSpec], seed: int = 0):
        self.cfg = cfg
        self.domains = domains
        #: the seed of the dry generation that counts and lays out the operations (a
        #: workload whose number of operations depends on the seed plans with the run's)
        self.plan_seed = seed
        #: operations in a run (the progress bar's total)
        self.total = 0
        self.layout: dict[str, Layout] = {d.name: Layout() for d in domains}
        self._plan()

    def superpages(self, d: DomainSpec) -> int:
        return min(self.cfg.superpages or d.superpages, d.superpages)

    def ops(self, seed: int) -> Iterator[Op]:
        return self._generate(random.Random(seed))

    def _generate(self, rng: random.Random) -> Iterator[Op]:
        raise NotImplementedError

    def _plan(self) -> None:
        """Count the operations and collect the slots they use (one dry generation)."""
        for op in self._generate(random.Random(self.plan_seed)):
            self.total += 1
            self.layout[op.domain].add(op)


class MapAll(Workload):
    """Map every superpage of every guest once (writable or not), then unmap them all;
    ``rounds`` times. One operation maps up to 512 superpages (one L2 table's worth)."""

    def _generate(self, rng):
        for _ in range(self.cfg.rounds):
            for op in ("map", "unmap"):
                for d in self.domains:
                    n = self.superpages(d)
                    for first in range(0, n, 512):
                        count = min(512, n - first)
                        yield Op(d.name, op, first, first, count=count, writable=self.cfg.writable)


class Churn(Workload):
    """Build and destroy the only mapping of each superpage, ``iterations`` times: the
    slow path's worst case. ``mark``: MARK_SUPER the superpages first (and UNMARK them
    at the end), so that every mapping takes the fast path."""

    def _generate(self, rng):
        c = self.cfg
        if c.mark:
            for d in self.domains:
                for i in range(self.superpages(d)):
                    yield Op(d.name, "mark", i)
        for _ in range(c.iterations):
            for d in self.domains:
                for i in range(self.superpages(d)):
                    yield Op(d.name, "map", i, i, writable=c.writable)
                    yield Op(d.name, "unmap", 0, i)
        if c.mark:
            for d in self.domains:
                for i in range(self.superpages(d)):
                    yield Op(d.name, "unmark", i)


class Shared(Workload):
    """Map the same ``superpages`` of each guest ``mappings`` times, each time in other
    L2 entries (copy k at slots ``k * superpages ..``), then unmap every copy;
    ``rounds`` times. Every mapping but the first of a superpage is a fast path."""

    def _generate(self, rng):
        c = self.cfg
        for _ in range(c.rounds):
            for op in ("map", "unmap"):
                for k in range(c.mappings):
                    for d in self.domains:
                        n = self.superpages(d)
                        yield Op(d.name, op, 0, k * n, count=n, writable=c.writable)


class Script(Workload):
    """An explicit list of operations (``script:``), run as written."""

    def _generate(self, rng):
        for s in self.cfg.script:
            yield Op(s.domain, s.op, s.superpage or 0, s.slot or 0, s.frame or 0,
                     s.count or 1, True if s.writable is None else s.writable)


class _Pool:
    """A set with O(1) add, remove and a seeded uniform pick, in a reproducible order."""

    def __init__(self, items=()):
        self.items: list = []
        self.pos: dict = {}
        for x in items:
            self.add(x)

    def add(self, x) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def remove(self, x) -> None:
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def pick(self, rng: random.Random):
        return self.items[rng.randrange(len(self.items))]

    def __contains__(self, x) -> bool:
        return x in self.pos

    def __len__(self) -> int:
        return len(self.items)


class _Guest:
    """What the random workload believes a guest has mapped, marked and ballooned.

    Built from the operations it generated alone (never from the machine), so
    the sequence is the same on every design."""

    def __init__(self, superpages: int, slots: int, windows: int):
        self.present = _Pool(range(superpages))
        self.out = _Pool()
        self.unmarked = _Pool(range(superpages))
        self.marked = _Pool()
        self.idle = _Pool(range(superpages))       # present, unmarked, not mapped
        self.uses = [0] * superpages
        self.free = _Pool(range(slots))
        self.used = _Pool()
        self.slot: dict[int, tuple[int, bool]] = {}
        self.free_w = _Pool(range(windows))
        self.used_w = _Pool()
        self.window: dict[int, tuple[int, int, int, bool]] = {}

    def _use(self, sp: int, n: int) -> None:
        self.uses[sp] += n
        if self.uses[sp]:
            self.idle.remove(sp)
        elif sp in self.unmarked and sp in self.present:
            self.idle.add(sp)

    def applicable(self) -> dict[str, bool]:
        return {
            "map": bool(self.free) and bool(self.present),
            "unmap": bool(self.used),
            "remap": bool(self.used),
            "map_4k": bool(self.free_w) and bool(self.present),
            "unmap_4k": bool(self.used_w),
            "remap_4k": bool(self.used_w),
            "mark": bool(self.unmarked),
            "unmark": bool(self.marked),
            "balloon_out": bool(self.idle),
            "balloon_in": bool(self.out),
        }


class Random(Workload):
    """A seeded mix of every operation (weights in ``mix:``), on ``slots`` superpage
    slots and ``small_slots`` 4 KiB windows per guest. Each step picks a guest, then
    an operation that makes sense in what the workload has done so far (unmap a
    mapped slot, mark an unmarked superpage, balloon out a superpage nothing maps
    or marks, ...), then its arguments."""

    OPS = ("map", "unmap", "remap", "map_4k", "unmap_4k", "remap_4k", "mark", "unmark",
           "balloon_out", "balloon_in")

    def _nslots(self, d: DomainSpec) -> int:
        return self.cfg.slots or 2 * self.superpages(d)

    def _plan(self) -> None:
        self.total = self.cfg.steps
        for d in self.domains:
            lay = self.layout[d.name]
            lay.slots.update(range(self._nslots(d)))
            lay.windows.update(range(self.cfg.small_slots))

    def _generate(self, rng):
        c = self.cfg
        weights = [getattr(c.mix, name) for name in self.OPS]
        guests = [_Guest(self.superpages(d), self._nslots(d), c.small_slots)
                  for d in self.domains]
        for _ in range(c.steps):
            i = rng.randrange(len(self.domains))
            d, g = self.domains[i], guests[i]
            can = g.applicable()
            choices = [(n, w) for n, w in zip(self.OPS, weights) if w > 0 and can[n]]
            if not choices:                 # nothing with a weight applies: anything that does
                choices = [(n, 1.0) for n in self.OPS if can[n]]
            r = rng.random() * sum(w for _, w in choices)
            for name, w in choices:
                r -= w
                if r < 0:
                    break
            yield getattr(self, "_" + name)(d.name, g, rng)

    # -- one operation each, updating the guest's model -----------------------------------
    @staticmethod
    def _map(name, g, rng):
        slot, sp = g.free.pick(rng), g.present.pick(rng)
        rw = rng.random() < 0.5
        g.free.remove(slot)
        g.used.add(slot)
        g.slot[slot] = (sp, rw)
        g._use(sp, 1)
        return Op(name, "map", sp, slot, writable=rw)

    @staticmethod
    def _unmap(name, g, rng):
        slot = g.used.pick(rng)
        sp, _ = g.slot.pop(slot)
        g.used.remove(slot)
        g.free.add(slot)
        g._use(sp, -1)
        return Op(name, "unmap", 0, slot)

    @staticmethod
    def _remap(name, g, rng):
        slot = g.used.pick(rng)
        sp, rw = g.slot[slot]
        g.slot[slot] = (sp, not rw)
        return Op(name, "remap", 0, slot, writable=not rw)

    @staticmethod
    def _map_4k(name, g, rng):
        w, sp = g.free_w.pick(rng), g.present.pick(rng)
        count = rng.randint(1, 16)
        frame = rng.randrange(SUPERPAGE_PAGES - count + 1)
        rw = rng.random() < 0.5
        g.free_w.remove(w)
        g.used_w.add(w)
        g.window[w] = (sp, frame, count, rw)
        g._use(sp, 1)
        return Op(name, "map-4k", sp, w, frame, count, rw)

    @staticmethod
    def _unmap_4k(name, g, rng):
        w = g.used_w.pick(rng)
        sp, frame, count, _ = g.window.pop(w)
        g.used_w.remove(w)
        g.free_w.add(w)
        g._use(sp, -1)
        return Op(name, "unmap-4k", 0, w, frame, count)

    @staticmethod
    def _remap_4k(name, g, rng):
        w = g.used_w.pick(rng)
        sp, frame, count, rw = g.window[w]
        g.window[w] = (sp, frame, count, not rw)
        return Op(name, "remap-4k", 0, w, frame, count, not rw)

    @staticmethod
    def _mark(name, g, rng):
        sp = g.unmarked.pick(rng)
        g.unmarked.remove(sp)
        g.marked.add(sp)
        g.idle.remove(sp)
        return Op(name, "mark", sp)

    @staticmethod
    def _unmark(name, g, rng):
        sp = g.marked.pick(rng)
        g.marked.remove(sp)
        g.unmarked.add(sp)
        g._use(sp, 0)
        return Op(name, "unmark", sp)

    @staticmethod
    def _balloon_out(name, g, rng):
        sp = g.idle.pick(rng)
        g.idle.remove(sp)
        g.present.remove(sp)
        g.unmarked.remove(sp)
        g.out.add(sp)
        return Op(name, "balloon-out", sp)

    @staticmethod
    def _balloon_in(name, g, rng):
        sp = g.out.pick(rng)
        g.out.remove(sp)
        g.present.add(sp)
        g.unmarked.add(sp)
        g._use(sp, 0)
        return Op(name, "balloon-in", sp)


class SplitDriver(Workload):
    """A split driver: the first domain is the backend (blkback, netback), every other a
    frontend. Each frontend maps the first half of its ``superpages`` writable (2 MiB
    mappings, as a kernel maps its memory), then for ``steps`` steps: a frontend grants
    the backend a frame of any of its superpages (half of them inside its superpage
    mappings) and the backend maps it in a 4 KiB window (writable if ``writable``, one
    grant in four read-only), or the backend unmaps a grant and the frontend revokes it,
    at most ``grants`` in flight; one step in twenty a frontend unmaps one of its mapped
    superpages (granted frames of it stay granted) or maps it again. At the end every
    grant is unmapped and revoked."""

    #: a Linux frontend reserves refs 0-7 (GNTTAB_NR_RESERVED_ENTRIES)
    FIRST_REF = 8

    def _generate(self, rng):
        c = self.cfg
        if len(self.domains) < 2:
            raise ConfigError(None, "domains", "a split-driver workload needs a backend and at "
                                               "least one frontend (two domains or more)")
        back, fronts = self.domains[0], self.domains[1:]
        half = {f.name: max(1, self.superpages(f) // 2) for f in fronts}
        mapped = {f.name: set(range(half[f.name])) for f in fronts}
        for f in fronts:
            yield Op(f.name, "map", 0, 0, count=half[f.name], writable=True)
        free = list(range(c.grants - 1, -1, -1))          # slots: the next at the end
        inflight: dict[int, tuple] = {}

        def end(i):
            f, ref, rw = inflight.pop(i)
            free.append(i)
            yield Op(back.name, "unmap-grant", ref, i // SUPERPAGE_PAGES, i % SUPERPAGE_PAGES,
                     peer=f)
            yield Op(f, "end-grant", 0, ref, peer=back.name)

        for _ in range(c.steps):
            x = rng.random()
            if x < 0.05:
                f = rng.choice(fronts).name
                sp = rng.randrange(half[f])
                if sp in mapped[f]:
                    mapped[f].discard(sp)
                    yield Op(f, "unmap", 0, sp)
                else:
                    mapped[f].add(sp)
                    yield Op(f, "map", sp, sp, writable=True)
            elif inflight and (not free or x < 0.5):
                yield from end(rng.choice(sorted(inflight)))
            else:
                i = free.pop()
                f = rng.choice(fronts)
                sp, frame = rng.randrange(self.superpages(f)), rng.randrange(SUPERPAGE_PAGES)
                rw = c.writable and rng.random() < 0.75
                ref = self.FIRST_REF + i
                inflight[i] = (f.name, ref, rw)
                yield Op(f.name, "grant", sp, ref, frame, writable=rw, peer=back.name)
                yield Op(back.name, "map-grant", ref, i // SUPERPAGE_PAGES, i % SUPERPAGE_PAGES,
                         writable=rw, peer=f.name)
        for i in sorted(inflight):
            yield from end(i)


KINDS: dict[str, type[Workload]] = {
    "map-all": MapAll, "churn": Churn, "shared": Shared, "random": Random, "script": Script,
    "split-driver": SplitDriver,
}


def make_workload(cfg: WorkloadConfig, domains: list[DomainSpec], seed: int = 0) -> Workload:
    """The workload of ``cfg`` on ``domains``, planned for ``seed`` (the run's)."""
    if cfg.ops is not None:          # raw hypercalls: the fuzzer's reproducer, not guest ops
        raise ConfigError(None, "workload.ops", "raw hypercalls (a fuzzer's reproducer) are "
                                                "replayed by `xensim run FILE`, not simulated")
    return KINDS[cfg.kind](cfg, domains, seed)
