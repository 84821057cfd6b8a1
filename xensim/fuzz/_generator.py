"""The generator: :class:`Fuzzer`, a :class:`~xensim.fuzz.FuzzRunner` with guests and
random calls from them, valid and invalid (docs/fuzzing.md, "What the guests do"). Each
guest is set up the way a kernel sets itself up (populate, build, pin, load, map, mark:
through its :class:`~xensim.fuzz.FuzzKernel`), then throws random hypercalls at Xen:
entries at every level pointing at its own, foreign, free, hole and out-of-range frames,
PSE entries with odd flags, MACHPHYS updates, pins, base pointers, MARK/UNMARK,
batches that fail half way, ballooning of mapped frames, update_va_mapping; dom0
destroys guests with live mappings and creates new ones. Generation is biased towards
calls that succeed, so that the invalid ones meet interesting states. The generator
reads only what a hostile guest can know: its frames, its tables and their contents,
the machine's M2P."""

from __future__ import annotations

import random

import numpy as np

from ..guest import DIRECTMAP_BASE, GuestError
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES
from ..xen import (Continuation, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                   HYPERVISOR_update_va_mapping, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
                   MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_NAMES, PADDR_MASK, _PAGE_ACCESSED,
                   _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD, _PAGE_PRESENT, _PAGE_PSE,
                   _PAGE_PWT, _PAGE_RW, _PAGE_USER, pte_mfn)
from ._grants import GRANT_ACTIONS, grant_call
from ._guest import FuzzGuest, FuzzKernel, KernelView
from ._ops import MEMOP_NAMES, CallResult
from ._preemption import interleave
from ._runner import FuzzRunner
from ._setup import POOL, Setup

__all__ = ["ACTIONS", "MMU_REQS", "EXT_REQS", "LEVEL_WEIGHTS", "Fuzzer"]


def _weighted(r: random.Random, table: dict):
    keys = list(table)
    return r.choices(keys, weights=[table[k] for k in keys])[0]


#: the actions of one random call and their weights (mostly single valid-leaning calls)
ACTIONS = {
    "mmu": 30, "ext": 12, "mmu_batch": 8, "pse_batch": 4, "ext_batch": 3,
    "balloon_out": 4, "balloon_in": 5, "update_va": 4, "kernel_map": 5, "foreign": 3,
    "garbage": 1, "destroy_create": 0.4,
}
#: the actions with the grant calls (xen/_grant_table.py; fuzz/_grants.py)
ACTIONS_WITH_GRANTS = {**ACTIONS, **GRANT_ACTIONS}
#: requests of an mmu_update
MMU_REQS = {"pse": 25, "l1": 25, "link": 12, "unmap": 12, "remap": 14, "write": 6,
            "machphys": 3, "bad_ptr": 3}
#: requests of an mmuext_op
EXT_REQS = {"pin": 25, "unpin": 14, "baseptr": 8, "mark": 25, "unmark": 22, "bad_cmd": 3}

#: how often unmap / remap pick an entry of each level
LEVEL_WEIGHTS = {1: 45, 2: 45, 3: 7, 4: 3}

_SP = SUPERPAGE_PAGES


class Fuzzer(FuzzRunner):
    """A :class:`FuzzRunner` with guests and a generator of random calls (``rng``-driven)."""

    def __init__(self, setup: Setup, rng: random.Random | int | str = 0, *, batch_check: bool = True,
                 tolerate=None, light: bool = False):
        super().__init__(setup, batch_check=batch_check, tolerate=tolerate, light=light)
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self.guests: dict[str, FuzzGuest] = {}
        self._created = 0
        if self.preemption is not None:             # its answers drawn from the episode's seed
            self.preemption.draw = random.Random(self.rng.getrandbits(64))

    # -- the kernel's hypercalls, recorded as ops ------------------------------------------
    def kernel_call(self, caller: int, number: int, *args, vcpu: int = 0) -> int:
        name = self.name_of(caller)
        if number == HYPERVISOR_mmu_update:
            op = {"op": "mmu_update", "domain": name, "reqs": [[r.ptr, r.val] for r in args[0]]}
        elif number == HYPERVISOR_mmuext_op:
            op = {"op": "mmuext_op", "domain": name,
                  "ops": [[MMUEXT_NAMES.get(o.cmd, o.cmd), o.arg1] + ([o.arg2] if o.arg2 else [])
                          for o in args[0]]}
        elif number == HYPERVISOR_memory_op:
            cmd, r = args
            op = {"op": "memory_op", "domain": name, "cmd": MEMOP_NAMES[cmd],
                  "order": r.extent_order,
                  "extents": None if r.extent_start is None else list(r.extent_start)}
            if r.extent_start is None or r.nr_extents != len(r.extent_start):
                op["nr"] = r.nr_extents
        elif number == HYPERVISOR_update_va_mapping:
            op = {"op": "update_va_mapping", "domain": name, "va": args[0], "val": args[1]}
        else:
            raise ValueError(f"hypercall {number} is not fuzzed")
        if vcpu:
            op["vcpu"] = vcpu
        res = self.step(op)
        while isinstance(res.rc, Continuation):
            # preempted: the kernel re-enters it at once, as Linux's hypercall page does
            res = self.step({"op": "continue", "domain": name, **({"vcpu": vcpu} if vcpu else {})})
        if number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) and len(args) > 1 and args[1] is not None:
            args[1][0] = res.done
        if number == HYPERVISOR_memory_op and args[1].extent_start is not None and res.out:
            args[1].extent_start[:] = res.out
        return res.rc

    # -- guests ----------------------------------------------------------------------------
    def start(self) -> None:
        for _ in range(self.setup.domains):
            self.new_guest()

    def new_guest(self) -> FuzzGuest | None:
        """dom0 creates a guest; the guest populates memory, builds its tree, maps, marks."""
        s = self.setup
        self._created += 1
        name = f"g{self._created}"
        create = {"op": "create_domain", "name": name, "max_pages": s.max_pages}
        if s.vcpus > 1:
            create["vcpus"] = s.vcpus
        res = self.step(create)
        if res.rc <= 0:
            return None
        k = FuzzKernel(KernelView(self), res.rc, pt_pool_pages=POOL)
        g = self.guests[name] = FuzzGuest(name, res.rc, k)
        try:
            k.populate(0, s.superpages * _SP)
            k.populate(s.small_gfn, s.small_pages, superpages=False)
            k.populate(k.pt_base, POOL, superpages=False)
            if k.build() != 0:
                return g
            if s.grants:                                  # gnttab_init
                self.step({"op": "grant_table_op", "domain": name, "cmd": "setup_table",
                           "grants": [[4]]})
            sps = [k.d.p2m.get(i * _SP) for i in range(s.superpages)]
            sps = [x for x in sps if x >= 0]
            k.map_superpages(DIRECTMAP_BASE, sps[:max(1, len(sps) // 2)])
            small = [k.d.p2m.get(s.small_gfn + i) for i in range(min(8, s.small_pages))]
            k.map_pages(DIRECTMAP_BASE + (1 << 30), [x for x in small if x >= 0], writable=False)
            if len(sps) > 1:
                k.mark_superpage(sps[-1])
        except GuestError:
            pass
        return g

    def live_guests(self) -> list[FuzzGuest]:
        m = self.m
        return [g for g in self.guests.values()
                if g.domid in m.domains and not m.domains[g.domid].is_dying]

    # -- reading what a guest knows ---------------------------------------------------------
    def tables(self, g: FuzzGuest) -> dict[int, list[int]]:
        """Level -> MFNs of the guest's live tables."""
        out: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
        m = self.m
        for page, (level, owner) in m.pt.live.items():
            if owner == g.domid:
                out[level].append(int(m.pdx_to_mfn(page)))
        return out

    def _one_level(self, r: random.Random, t: dict[int, list[int]], level: int, parent: int,
                   child: int) -> tuple[int, int, int]:
        """Xen 4.10 on (XSA-240, counted linear entries): most of the time a linear entry
        that the one-level rule refuses, at a level where the guest has counted tables:
        from a table used linearly (inc_linear_entries) or to a table holding linear
        entries (inc_linear_uses), to or from another table of that level."""
        m = self.m
        counted = [(lv, mfn, c) for lv in (2, 3, 4) for mfn in t[lv]
                   if (c := m.pt.linear_pt_count.get(m.mfn_to_page(mfn), 0))]
        if not counted or r.random() < 0.2:
            return level, parent, child
        level, mfn, c = r.choice(counted)
        other = r.choice(t[level])
        return (level, mfn, other) if c < 0 else (level, other, mfn)

    def _own(self, domid: int, r: random.Random) -> int | None:
        d = self.m.domains.get(domid)
        if d is None or not d.owned:
            return None
        runs = d.owned.runs()
        s, e = r.choices(runs, weights=[e - s for s, e in runs])[0]
        return r.randrange(s, e)

    def _own_superpages(self, domid: int) -> list[int]:
        d = self.m.domains.get(domid)
        out = []
        for s, e in (d.owned.runs() if d is not None else ()):
            a = -(-s // _SP) * _SP
            out.extend(range(a, e - _SP + 1, _SP))
        return out

    def _small(self, g: FuzzGuest, r: random.Random) -> int | None:
        """A frame of the guest's 4 KiB region (fresh-table candidates), else any own frame."""
        d = self.m.domains[g.domid]
        base = self.setup.small_gfn
        for _ in range(4):
            mfn = d.p2m.get(base + r.randrange(_SP))
            if mfn >= 0:
                return mfn
        return self._own(g.domid, r)

    def _others(self, g: FuzzGuest) -> list[int]:
        return [d for d in self.m.domains if d not in (0, g.domid)]

    def frame(self, g: FuzzGuest, r: random.Random, own: float = 0.72) -> int:
        """A 4 KiB target: mostly the guest's own, else a table, foreign, free, hole, out of range."""
        x = r.random()
        if x < own:
            f = self._own(g.domid, r)
            if f is not None:
                return f
        kind = r.choice(["table", "foreign", "foreign", "free", "hole", "oor", "oor"])
        return self._odd_frame(g, r, kind)

    def _odd_frame(self, g: FuzzGuest, r: random.Random, kind: str) -> int:
        m = self.m
        if kind == "table":
            t = [x for lv in self.tables(g).values() for x in lv]
            if t:
                return r.choice(t)
        if kind == "foreign":
            others = self._others(g)
            if others:
                f = self._own(r.choice(others), r)
                if f is not None:
                    return f
        if kind == "free":
            free = m.heap.free_ranges()
            if free:
                s, e = r.choice(free)
                return r.randrange(s, e)
        if kind == "hole" and m.memmap.holes:
            s, e = r.choice(m.memmap.holes)
            return r.randrange(s, e)
        return r.choice([m.max_page, m.max_page + r.randrange(1, 4096), 1 << 30,
                         (1 << 40) - 1, r.randrange(m.max_page, 1 << 40)])

    def superpage(self, g: FuzzGuest, r: random.Random, own: float = 0.78) -> int:
        """A 2 MiB target: mostly an own superpage, else foreign, unaligned, hole, ragged, beyond."""
        m = self.m
        mine = self._own_superpages(g.domid)
        if mine and r.random() < own:
            return r.choice(mine)
        kind = r.choice(["foreign", "foreign", "unaligned", "hole", "ragged", "oor", "free",
                         "table"])
        if kind == "foreign":
            others = [s for d in self._others(g) for s in self._own_superpages(d)]
            if others:
                return r.choice(others)
        if kind == "unaligned" and mine:
            return r.choice(mine) + r.randrange(1, _SP)
        if kind == "hole" and m.memmap.holes:
            s, e = r.choice(m.memmap.holes)
            return (r.randrange(s, e) // _SP) * _SP
        if kind == "ragged":
            return (m.max_page - 1) // _SP * _SP            # valid MFN, mfn + 511 beyond max_page
        if kind == "free":
            free = [(s, e) for s, e in m.heap.free_ranges() if e - s >= _SP]
            if free:
                s, e = r.choice(free)
                a = -(-s // _SP) * _SP
                if a + _SP <= e:
                    return a
        if kind == "table":
            t = [x for lv in self.tables(g).values() for x in lv]
            if t:
                return r.choice(t) // _SP * _SP
        return r.choice([m.max_page // _SP * _SP + _SP, 1 << 30, (1 << 40) - _SP])

    @staticmethod
    def flags(r: random.Random, pse: bool = False, odd: float = 0.1) -> int:
        rw = r.random() < 0.6
        f = (_PAGE_PRESENT | (_PAGE_RW if rw else 0) | (_PAGE_USER if r.random() < 0.85 else 0)
             | (_PAGE_ACCESSED if r.random() < 0.6 else 0)
             | (_PAGE_DIRTY if rw and r.random() < 0.5 else 0) | (_PAGE_PSE if pse else 0))
        if r.random() < odd:
            f ^= r.choice([_PAGE_NX, _PAGE_GLOBAL, _PAGE_PCD | _PAGE_PWT, _PAGE_PSE, _PAGE_RW,
                           1 << r.randrange(52, 63), 1 << r.randrange(52, 63), _PAGE_PRESENT,
                           _PAGE_USER])
        return f

    @staticmethod
    def _index(r: random.Random, level: int) -> int:
        i = r.randrange(512)
        if level == 4 and 256 <= i <= 271 and r.random() < 0.8:
            i = r.choice([272, 273, 0, 511])                 # mostly not Xen's slots
        return i

    @staticmethod
    def _ptr(table: int, index: int, cmd: int = MMU_NORMAL_PT_UPDATE) -> int:
        return (table << PAGE_SHIFT) | (index * 8) | cmd

    def _present(self, table: int, r: random.Random, leaf_ok: bool = True) -> int | None:
        """A present entry of ``table`` (``leaf_ok=False``: preferably not PSE)."""
        e = self.m.mem.table(table)
        idx = np.flatnonzero(e & np.uint64(_PAGE_PRESENT))
        if not leaf_ok:
            links = np.flatnonzero((e & np.uint64(_PAGE_PRESENT | _PAGE_PSE)) == _PAGE_PRESENT)
            idx = links if links.size else idx
        return int(r.choice(idx)) if idx.size else None

    # -- mmu_update requests ------------------------------------------------------------------
    def req(self, g: FuzzGuest, r: random.Random, kind: str | None = None) -> list[int]:
        kind = kind or _weighted(r, MMU_REQS)
        t = self.tables(g)
        if kind == "pse":
            table = r.choice(t[2]) if t[2] else self._small(g, r)
            return [self._ptr(table, self._index(r, 2)),
                    (self.superpage(g, r) << PAGE_SHIFT) | self.flags(r, pse=True)]
        if kind == "l1":
            table = r.choice(t[1]) if t[1] else self._small(g, r)
            return [self._ptr(table, self._index(r, 1)), (self.frame(g, r) << PAGE_SHIFT) | self.flags(r)]
        if kind == "link":
            level = r.choice([l for l in (2, 3, 4) if t[l]] or [2])
            parent = r.choice(t[level]) if t[level] else self._small(g, r)
            x = r.random()
            f = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
            if x < 0.5:
                child = self._small(g, r)
            elif x < 0.65 and t[level - 1]:
                child = r.choice(t[level - 1])                  # share a table (valid)
            elif (x < 0.8 or (x < 0.95 and self.m.pt.linear_pt_count)) and t[level]:
                # a linear entry: to a table of its own level, itself or another (loops
                # too); read-only, else refused (more of them where 4.10's counts exist)
                child = parent if r.random() < 0.3 else r.choice(t[level])
                if self.m.pt.linear_pt_count:
                    level, parent, child = self._one_level(r, t, level, parent, child)
                if r.random() < 0.85:
                    f &= ~_PAGE_RW
            else:
                child = self.frame(g, r, own=0.5)
            if r.random() < 0.1:
                f ^= r.choice([_PAGE_PSE, _PAGE_RW, 1 << r.randrange(52, 63), _PAGE_NX,
                               _PAGE_GLOBAL, _PAGE_PCD, 1 << r.randrange(9, 12)])
            return [self._ptr(parent, self._index(r, level)), (child << PAGE_SHIFT) | f]
        if kind in ("unmap", "remap"):
            # mostly leaves: a cleared L4 or L3 entry tears down a whole subtree
            levels = [lv for lv in (1, 2, 3, 4) if t[lv]]
            for _ in range(4):
                if not levels:
                    break
                level = r.choices(levels, weights=[LEVEL_WEIGHTS[lv] for lv in levels])[0]
                table = r.choice(t[level])
                i = self._present(table, r)
                if i is None:
                    continue
                old = self.m.mem.read(table, i)
                if kind == "unmap":
                    val = 0 if r.random() < 0.85 else r.getrandbits(64) & ~_PAGE_PRESENT
                    return [self._ptr(table, i), val]
                return self._remap(r, table, i, level, old)
            return self.req(g, r, "pse" if kind == "remap" else "l1")
        if kind == "write":
            table = self._small(g, r)
            sub = r.choice(["pse", "l1", "link", "junk"])
            if sub == "junk":
                val = r.getrandbits(64)
            elif sub == "pse":
                val = (self.superpage(g, r) << PAGE_SHIFT) | self.flags(r, pse=True)
            else:
                val = (self.frame(g, r) << PAGE_SHIFT) | self.flags(r)
            return [self._ptr(table, r.randrange(512)), val]
        if kind == "machphys":
            mfn = self.frame(g, r)
            x = r.random()
            gpfn = (r.randrange(self.setup.max_pages + 8) if x < 0.8 else
                    r.choice([(1 << 64) - 1, 1 << 63, (1 << 63) - 1, r.getrandbits(64)]))
            return [(mfn << PAGE_SHIFT) | MMU_MACHPHYS_UPDATE, gpfn]
        # bad_ptr: unknown commands (ptr's low 3 bits 3, 4, 5), a table that is nobody's
        table = self.frame(g, r, own=0.5)
        return [(table << PAGE_SHIFT) | r.choice([3, 4 | MMU_NORMAL_PT_UPDATE, 0x7f8 | 3, 5]),
                (self.frame(g, r) << PAGE_SHIFT) | self.flags(r)]

    def _remap(self, r: random.Random, table: int, i: int, level: int, old: int) -> list[int]:
        mfn = pte_mfn(old)
        choice = r.choice(["rw", "rw", "pse", "ad", "nx", "mfn", "reserved", "user", "global"])
        val = old
        if choice == "rw":
            val ^= _PAGE_RW
        elif choice == "pse":
            val ^= _PAGE_PSE                                    # XSA-148's shape on L2
        elif choice == "ad":
            val ^= _PAGE_ACCESSED | _PAGE_DIRTY
        elif choice == "nx":
            val ^= _PAGE_NX
        elif choice == "mfn":
            delta = r.choice([1, -1, _SP, -_SP, 2])
            val = (old & ~PADDR_MASK) | ((max(mfn + delta, 0) << PAGE_SHIFT) & PADDR_MASK)
        elif choice == "reserved":
            val |= 1 << r.randrange(52, 63)
        elif choice == "user":
            val ^= _PAGE_USER
        else:
            val ^= _PAGE_GLOBAL
        cmd = MMU_PT_UPDATE_PRESERVE_AD if r.random() < 0.15 else MMU_NORMAL_PT_UPDATE
        return [self._ptr(table, i, cmd), val]

    # -- mmuext_op requests -----------------------------------------------------------------
    def ext(self, g: FuzzGuest, r: random.Random, kind: str | None = None) -> list:
        kind = kind or _weighted(r, EXT_REQS)
        m = self.m
        d = m.domains[g.domid]
        t = self.tables(g)
        if kind == "pin":
            level = r.randrange(1, 5)
            x = r.random()
            if x < 0.35 and t[level]:
                mfn = r.choice(t[level])
            elif x < 0.7:
                mfn = self._small(g, r)
            else:
                mfn = self.frame(g, r, own=0.4)
            return [f"pin_l{level}_table", mfn]
        if kind == "unpin":
            pinned = [int(m.pdx_to_mfn(p)) for p in d.pinned]
            mfn = r.choice(pinned) if pinned and r.random() < 0.6 else self.frame(g, r, own=0.5)
            return ["unpin_table", mfn]
        if kind == "baseptr":
            x = r.random()
            if x < 0.5 and t[4]:
                mfn = r.choice(t[4])
            elif x < 0.75:
                mfn = self._small(g, r)
            else:
                mfn = self.frame(g, r, own=0.4)
            if self.setup.vcpus > 1 and r.random() < 0.5:
                # a user base pointer: an L4 (often the kernel's user L4s), none (0), or not
                return ["new_user_baseptr", 0 if r.random() < 0.15 else mfn]
            return ["new_baseptr", mfn]
        if kind in ("mark", "unmark"):
            if kind == "unmark" and d.marked and r.random() < 0.5:
                return ["unmark_super", r.choice(sorted(d.marked))]
            return [f"{kind}_super", self.superpage(g, r)]
        return [r.choice([6, 7, 18, 21, 99]), self._own(g.domid, r) or 0]

    # -- actions (one or a few calls) -----------------------------------------------------------
    def random_call(self, r: random.Random | None = None) -> None:
        r = r or self.rng
        if self.pending and interleave(self, r):
            return
        self.act(_weighted(r, ACTIONS_WITH_GRANTS if self.setup.grants else ACTIONS), r)

    def act(self, action: str, r: random.Random | None = None) -> None:
        """Perform one action (a call, or dom0's destroy + create + the new guest's setup)."""
        r = r or self.rng
        guests = self.live_guests()
        if not guests:                                # every guest was destroyed: a new one
            self.new_guest()
            return
        g = r.choice(guests)
        getattr(self, f"_a_{action}")(g, r)

    def _mmu(self, g: FuzzGuest, reqs: list, foreign: str | None = None) -> CallResult:
        op = {"op": "mmu_update", "domain": g.name, "reqs": reqs}
        if foreign is not None:
            op["foreign"] = foreign
        return self.step(op)

    def _mmuext(self, g: FuzzGuest | str, ops: list, foreign: str | None = None) -> CallResult:
        op = {"op": "mmuext_op", "domain": g if isinstance(g, str) else g.name, "ops": ops}
        if foreign is not None:
            op["foreign"] = foreign
        self._from_vcpu(op)
        return self.step(op)

    def _from_vcpu(self, op: dict, r: random.Random | None = None) -> None:
        """With several vCPUs per guest, a call from any of them (now and then one the
        guest does not have: -ESRCH)."""
        n = self.setup.vcpus
        if n > 1:
            r = r or self.rng
            v = r.randrange(n + 1) if r.random() < 0.03 else r.randrange(n)
            if v:
                op["vcpu"] = v

    def _a_mmu(self, g, r):
        self._mmu(g, [self.req(g, r)])

    def _a_ext(self, g, r):
        self._mmuext(g, [self.ext(g, r)])

    def _a_mmu_batch(self, g, r):
        self._mmu(g, [self.req(g, r) for _ in range(r.randrange(2, 11))])

    def _a_ext_batch(self, g, r):
        self._mmuext(g, [self.ext(g, r) for _ in range(r.randrange(2, 7))])

    def _a_pse_batch(self, g, r):
        """8-16 PSE maps (or unmaps) into one L2 table: the vectorised path, and its failures."""
        t = self.tables(g)
        if not t[2]:
            return self._a_mmu(g, r)
        table = r.choice(t[2])
        e = self.m.mem.table(table)
        n = r.randrange(8, 17)
        pse = np.flatnonzero((e & np.uint64(_PAGE_PRESENT)) != 0)
        if r.random() < 0.35 and pse.size:
            idx = [int(i) for i in pse[:n]]
            reqs = [[self._ptr(table, i), 0] for i in idx]
        else:
            free = [int(i) for i in np.flatnonzero((e & np.uint64(_PAGE_PRESENT)) == 0)]
            idx = r.sample(free, min(n, len(free)))
            mine = self._own_superpages(g.domid)
            r.shuffle(mine)
            flags = self.flags(r, pse=True, odd=0)
            reqs = []
            for k, i in enumerate(idx):
                sp = mine[k % len(mine)] if mine and r.random() < 0.85 else self.superpage(g, r)
                reqs.append([self._ptr(table, i), (sp << PAGE_SHIFT) | flags])
        if r.random() < 0.3 and reqs:                     # one bad request somewhere
            reqs[r.randrange(len(reqs))] = self.req(g, r)
        if reqs:
            self._mmu(g, reqs)

    def _a_balloon_out(self, g, r):
        """decrease_reservation of frames that may be mapped, tables, pinned, marked, foreign."""
        m = self.m
        d = m.domains[g.domid]
        if r.random() < 0.25:
            sps = self._own_superpages(g.domid)
            ext = [r.choice(sps) if sps and r.random() < 0.8 else self.superpage(g, r)]
            order = 9
        else:
            order = 0
            pool = []
            t = self.tables(g)
            pool += [x for lv in t.values() for x in lv]
            pool += [int(m.pdx_to_mfn(p)) for p in d.pinned]
            pool += [mfn + r.randrange(_SP) for mfn in d.marked]
            ext = []
            for _ in range(r.randrange(1, 5)):
                x = r.random()
                ext.append(r.choice(pool) if pool and x < 0.3 else self.frame(g, r, own=0.85))
        self.step({"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation",
                   "order": order, "extents": ext})

    def _a_balloon_in(self, g, r):
        """populate_physmap at empty (or not) GPFNs, increase_reservation, bad arguments."""
        s = self.setup
        d = self.m.domains[g.domid]
        x = r.random()
        op = {"op": "memory_op", "domain": g.name, "cmd": "populate_physmap"}
        if x < 0.3:
            slots = [gfn for gfn in range(0, s.small_gfn, _SP) if not d.p2m.any_in_run(gfn, _SP)]
            gfn = r.choice(slots) if slots and r.random() < 0.85 else r.randrange(0, s.small_gfn, _SP)
            op.update(order=9, extents=[gfn])
        elif x < 0.75:
            empty = (s.small_gfn + np.flatnonzero(d.p2m.get_run(s.small_gfn, _SP) < 0)).tolist()
            k = r.randrange(1, 5)
            gfns = r.sample(empty, min(k, len(empty))) if empty and r.random() < 0.85 else \
                [r.randrange(0, s.max_pages + 600) for _ in range(k)]
            op.update(order=0, extents=gfns)
        elif x < 0.9:
            op.update(cmd="increase_reservation", order=r.choice([0, 0, 9]),
                      extents=[0] * r.randrange(1, 3))
        else:
            bad = r.choice(["nr", "order", "foreign", "null"])
            op.update(order=0, extents=[s.small_gfn + r.randrange(_SP)])
            if bad == "nr":
                op["nr"] = 3
            elif bad == "order":
                op["order"] = r.choice([10, 18, -1])
            elif bad == "foreign":
                others = [gg.name for gg in self.live_guests() if gg is not g]
                op["target"] = r.choice(others) if others else "dom0"
            else:
                op["extents"] = None
        self.step(op)

    def reachable(self, g: FuzzGuest) -> tuple[list[int], list[int]]:
        """VAs (2 MiB aligned) the guest's tree maps through an L1 table, and through PSE."""
        m = self.m
        d = m.domains[g.domid]
        l1, pse = [], []
        if d.baseptr is None:
            return l1, pse
        present = np.uint64(_PAGE_PRESENT)
        e4 = m.mem.table(d.baseptr)
        for i4 in np.flatnonzero(e4 & present)[:8]:
            t3 = pte_mfn(int(e4[i4]))
            e3 = m.mem.table(t3)
            for i3 in np.flatnonzero(e3 & present)[:8]:
                t2 = pte_mfn(int(e3[i3]))
                e2 = m.mem.table(t2)
                base = (int(i4) << 39) | (int(i3) << 30)
                for i2 in np.flatnonzero(e2 & present)[:64]:
                    va = base | (int(i2) << 21)
                    if va & (1 << 47):
                        va |= 0xFFFF << 48
                    (pse if int(e2[i2]) & _PAGE_PSE else l1).append(va)
        return l1, pse

    def _a_update_va(self, g, r):
        """update_va_mapping at a VA mapped through an L1 table (or PSE, or nothing)."""
        l1, pse = self.reachable(g)
        x = r.random()
        if l1 and x < 0.85:
            va = r.choice(l1) | (r.randrange(512) << PAGE_SHIFT)
        elif pse and x < 0.93:
            va = r.choice(pse) | (r.randrange(512) << PAGE_SHIFT)
        else:
            va = DIRECTMAP_BASE + (r.randrange(1 << 20) << PAGE_SHIFT)
        val = 0 if r.random() < 0.15 else (self.frame(g, r) << PAGE_SHIFT) | self.flags(r)
        op = {"op": "update_va_mapping", "domain": g.name, "va": va, "val": val}
        self._from_vcpu(op, r)
        self.step(op)

    def refresh_kernel(self, g: FuzzGuest) -> None:
        """The kernel forgets tables that hostile calls unlinked (it knows what it did):
        its root is the vCPU's base pointer, its cached tables must still be live at their
        level; forgotten frames go back to its pool (stale entries and all); a 2 MiB
        fallback mapping (no PV superpages) is forgotten once its L1 table is not live."""
        k, m = g.kernel, self.m
        d = m.domains[g.domid]
        k.root = d.baseptr
        live = m.pt.live
        for key, mfn in list(k.tables.items()):
            if live.get(m.mfn_to_page(mfn)) != (key[0], g.domid):
                del k.tables[key]
                if mfn in d.owned:
                    k.give_back_table(mfn)
        for va, mfn in list(k.fallback.items()):      # 2 MiB fallback tables unlinked
            if live.get(m.mfn_to_page(mfn)) != (1, g.domid):
                del k.fallback[va]

    def _a_kernel_map(self, g, r):
        """The guest kernel maps memory at a VA (creating and linking tables as needed)."""
        k = g.kernel
        self.refresh_kernel(g)
        if k.root is None:
            return self._a_mmu(g, r)
        try:
            if r.random() < 0.5:
                va = DIRECTMAP_BASE + (r.randrange(2048) << 21)           # 4 GiB of 2 MiB slots
                mine = self._own_superpages(g.domid)
                n = r.randrange(1, 4)
                mfns = [r.choice(mine) if mine and r.random() < 0.9 else self.superpage(g, r)
                        for _ in range(n)]
                k.map_superpages(va, mfns, writable=r.random() < 0.6)
            else:
                va = DIRECTMAP_BASE + (1 << 32) + (r.randrange(4096) << PAGE_SHIFT)
                mfns = [self.frame(g, r, own=0.9) for _ in range(r.randrange(1, 6))]
                k.map_pages(va, mfns, writable=r.random() < 0.5)
        except GuestError:
            pass

    def _a_foreign(self, g, r):
        """Calls naming another domain: dom0's foreign pins and marks, domU's (refused) ones."""
        others = [x for x in self.live_guests() if x is not g]
        other = r.choice(others).name if others and r.random() < 0.9 else "nobody"
        x = r.random()
        if x < 0.35:                                    # dom0 on behalf of g
            self._mmuext("dom0", [self.ext(g, r)], foreign=g.name)
        elif x < 0.5:
            self.step({"op": "memory_op", "domain": "dom0", "cmd": "populate_physmap", "order": 0,
                       "extents": [self.setup.small_gfn + r.randrange(_SP)], "target": g.name})
        elif x < 0.65:
            self._mmu(g, [self.req(g, r)], foreign=other)
        elif x < 0.8:
            self._mmuext(g, [self.ext(g, r)], foreign=other)
        else:
            self.step({"op": "mmu_update", "domain": "dom0", "reqs": [self.req(g, r)],
                       "foreign": g.name})

    def _a_garbage(self, g, r):
        x = r.random()
        if x < 0.3:
            self._mmu(g, [])
        elif x < 0.6:
            self._mmuext(g, [])
        else:
            self.step({"op": "destroy_domain", "domain": r.choice(["nobody", "dom0"])})

    def _a_grant(self, g, r):
        grant_call(self, "grant", g, r)

    def _a_grant_map(self, g, r):
        grant_call(self, "grant_map", g, r)

    def _a_grant_unmap(self, g, r):
        grant_call(self, "grant_unmap", g, r)

    def _a_destroy_create(self, g, r):
        self.step({"op": "destroy_domain", "domain": g.name})
        self.guests.pop(g.name, None)
        self.new_guest()
