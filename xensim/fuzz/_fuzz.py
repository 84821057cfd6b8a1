"""The hostile-guest fuzzer (issue 7): random hypercalls from several PV guests, checked after every call.

A small machine (about 110 MiB of RAM with a hole and a ragged end) runs a few
PV guests. Each is set up the way a kernel sets itself up (2 MiB and 4 KiB
extents, an L4/L3 tree built, pinned and loaded, a few mappings and a mark: all
through :class:`~xensim._guest.GuestKernel`), then the guests throw random
hypercalls at Xen, valid and invalid: entries at every level pointing at their
own, foreign, free, hole and out-of-range frames, PSE entries with odd flags,
plain writes, MMU_MACHPHYS_UPDATE, pins, unpins, NEW_BASEPTR, MARK/UNMARK of
anything, batches that fail half way, ballooning of mapped frames,
update_va_mapping; dom0 destroys guests with live mappings and creates new
ones. Generation is biased towards calls that succeed, so that the invalid
ones meet interesting states.

Every action is a hypercall (or dom0's create/destroy_domain): the fuzzer reads
state only to choose targets (what a hostile guest can know: its frames, its
tables and their contents, the machine's M2P) and to check. After **every**
call it checks (see docs/fuzzing.md):

* ``crash``: the call raised (a RefcountBug, an IndexError, ...): never allowed;
* ``unchanged``: a call that did nothing (rc < 0, or nothing done) left the
  machine bit for bit as it was;
* ``batch``: a call of several requests (a batch, several extents) equals the
  same requests issued one by one, in order: the same number done, the same
  errno from the first failing request, which alone leaves the machine
  unchanged, and the same final machine. This is the "failed half way" check,
  and it also checks the vectorised PSE batch against in-order processing.
  Both are checked against a *lagging twin*: a second machine kept one call
  behind, which replays every call (a batch request by request) after the
  comparison (:class:`Runner`, :func:`differ`);
* ``audit``: the auditor is clean;
* ``isolation``: no live table holds an entry to a frame its owner does not own
  (PSE entries: all 512 frames); base pointers, pins and marks are the domain's
  own frames;
* ``xen-bug``: the machine recorded a faithful-mode violation (``m.violations``);
* ``zombie``: a guest destroyed by dom0 did not go away (its frames are still
  referenced from elsewhere);
* ``teardown``: at the end every guest is destroyed and the heap holds all RAM
  again, exactly as a fresh heap, and the auditor is clean.

A violation ends the episode; :func:`minimise` delta-debugs the episode's call
list (replaying from scratch on a fresh machine) down to a minimal sequence
with the same signature, and :func:`to_script_yaml` writes it as a ``script``
workload that :func:`replay` replays.
"""

from __future__ import annotations

import copy
import errno
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..xen import audit
from ..xen import DOMID_SELF
from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT
from ..guest import DIRECTMAP_BASE, GuestError, GuestKernel
from ..mem import DomainHeap
from ..xen import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                         HYPERVISOR_update_va_mapping, errno_name)
from ..xen import Machine, RELEASE_NAMES
from ..mem import MemoryMap
from ..xen import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                         XENMEM_populate_physmap, XenMemoryReservation)
from ..xen import (MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
                   MMUEXT_NAMES, MmuextOp, MmuUpdate)
from ..mem import DOMID_INVALID
from ..xen import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD,
                         _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER, PADDR_MASK,
                         pte_mfn)
from ..output import write_atomic
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES

MiB = 1 << 20
KiB = 1 << 10

#: the default machine: RAM [0, 48 MiB) and [65 MiB, 127.5 MiB): a 17 MiB hole whose
#: last superpage is half RAM, and a last superpage that is three quarters RAM (valid MFN,
#: mfn+511 beyond max_page). Frames in the hole are mfn_valid (same PDX group as RAM).
DEFAULT_RAM = ((0, 48 * MiB), (65 * MiB, 127 * MiB + 512 * KiB))

#: 4 KiB frames of each guest's page-table pool (GuestKernel's)
POOL = 64

#: a domid no domain has (for names that do not exist when a script is replayed)
NO_SUCH_DOMID = 0x7FEF

MMUEXT_CMDS = {name: cmd for cmd, name in MMUEXT_NAMES.items()}
MEMOP_CMDS = {"increase_reservation": XENMEM_increase_reservation,
              "decrease_reservation": XENMEM_decrease_reservation,
              "populate_physmap": XENMEM_populate_physmap}
MEMOP_NAMES = {v: k for k, v in MEMOP_CMDS.items()}
OPS = ("create_domain", "destroy_domain", "mmu_update", "mmuext_op", "memory_op",
       "update_va_mapping")


def designs() -> list[str]:
    """Every registered superpage design (loads the design modules)."""
    from ..designs import REGISTRY
    return sorted(REGISTRY)


# ---------------------------------------------------------------------------------------
# the machine and the guests' layout
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """Everything that determines a fresh machine and the guests' initial shape."""
    design: str = "xen-4.1"
    version: str = "4.8"
    faithful: bool = False
    allow_superpage: bool = True
    domains: int = 3
    ram: tuple = DEFAULT_RAM
    pdx: str = "none"
    #: 2 MiB extents each guest populates at start (GPFN 0 on)
    superpages: int = 6
    #: 4 KiB extents each guest populates at start (in its 4 KiB region)
    small_pages: int = 24

    def machine(self) -> Machine:
        return Machine(MemoryMap([tuple(r) for r in self.ram], name="fuzz"), self.pdx,
                       version=self.version, allow_superpage=self.allow_superpage,
                       superpage=self.design, faithful=self.faithful)

    # GPFN layout of a guest: [0, S) data superpages, [S, S+2) free superpage slots,
    # [S+2, S+3) the 4 KiB region, then the page-table pool (superpage units of 512)
    @property
    def spare_gfn(self) -> int:
        return self.superpages * SUPERPAGE_PAGES

    @property
    def small_gfn(self) -> int:
        return (self.superpages + 2) * SUPERPAGE_PAGES

    @property
    def max_pages(self) -> int:
        return (self.superpages + 3) * SUPERPAGE_PAGES + POOL

    def config(self) -> dict:
        """The machine and hypervisor sections of a config file."""
        return {"machine": {"memory_map": [[s, e] for s, e in self.ram], "pdx": self.pdx},
                "hypervisor": {"version": self.version, "superpage": self.design,
                               "allow_superpage": self.allow_superpage,
                               "faithful": self.faithful}}

    @classmethod
    def from_config(cls, data: dict) -> "Setup":
        mach, hv = data.get("machine") or {}, data.get("hypervisor") or {}
        ram = tuple((_int(s), _int(e)) for s, e, *_ in mach.get("memory_map") or DEFAULT_RAM)
        return cls(design=hv.get("superpage", "xen-4.1"), version=str(hv.get("version", "4.8")),
                   faithful=bool(hv.get("faithful", False)),
                   allow_superpage=bool(hv.get("allow_superpage", True)),
                   ram=ram, pdx=mach.get("pdx", "mask"))


def _int(x) -> int:
    return int(x, 0) if isinstance(x, str) else int(x)


# ---------------------------------------------------------------------------------------
# ops: one call each, as plain data (the YAML script's items)
# ---------------------------------------------------------------------------------------

@dataclass
class Result:
    """What one op returned: rc, and how many of its ``n`` requests (extents) were done."""
    rc: int
    done: int = 0
    n: int = 1
    out: list | None = None

    @property
    def failed(self) -> bool:
        return self.rc < 0 or self.done < self.n


def execute(m: Machine, doms: dict[str, int], op: dict) -> Result:
    """Issue one op on ``m``. ``doms`` maps domain names to domids (create_domain adds)."""
    kind = op["op"]
    if kind == "create_domain":
        rc = m.create_domain(op["name"], int(op["max_pages"]))
        if rc > 0:
            doms[op["name"]] = rc
        return Result(rc, int(rc > 0), 1)
    dom = doms.get(op.get("domain", "dom0"), NO_SUCH_DOMID)
    if kind == "destroy_domain":
        rc = m.destroy_domain(dom)
        return Result(rc, int(rc == 0), 1)
    foreign = op.get("foreign")
    fd = DOMID_SELF if foreign is None else doms.get(foreign, NO_SUCH_DOMID)
    if kind == "mmu_update":
        reqs = [MmuUpdate(_int(p), _int(v)) for p, v in op["reqs"]]
        done = [0]
        rc = m.hypercall(dom, HYPERVISOR_mmu_update, reqs, done, fd)
        return Result(rc, done[0], len(reqs))
    if kind == "mmuext_op":
        ops = [MmuextOp(MMUEXT_CMDS[c] if isinstance(c, str) else int(c), _int(a))
               for c, a in op["ops"]]
        done = [0]
        rc = m.hypercall(dom, HYPERVISOR_mmuext_op, ops, done, fd)
        return Result(rc, done[0], len(ops))
    if kind == "memory_op":
        ext = op.get("extents")
        ext = None if ext is None else [_int(x) for x in ext]
        nr = int(op.get("nr", len(ext) if ext is not None else 1))
        target = op.get("target")
        tid = DOMID_SELF if target is None else doms.get(target, NO_SUCH_DOMID)
        r = XenMemoryReservation(ext, nr, int(op.get("order", 0)), 0, tid)
        rc = m.hypercall(dom, HYPERVISOR_memory_op, MEMOP_CMDS[op["cmd"]], r)
        return Result(rc, max(rc, 0), nr, r.extent_start)
    if kind == "update_va_mapping":
        rc = m.hypercall(dom, HYPERVISOR_update_va_mapping, _int(op["va"]), _int(op["val"]),
                         int(op.get("flags", 0)))
        return Result(rc, int(rc == 0), 1)
    raise ValueError(f"unknown op {kind!r} (one of {', '.join(OPS)})")


def singles(op: dict) -> list[dict]:
    """The op as single-request ops, in order (``[op]`` when it is one request).

    decrease_reservation of 2^order frames works page by page (a partly done
    extent stays removed), so its singles are order-0 calls, one per frame.
    """
    kind = op["op"]
    if kind == "mmu_update" and len(op["reqs"]) > 1:
        return [{**op, "reqs": [r]} for r in op["reqs"]]
    if kind == "mmuext_op" and len(op["ops"]) > 1:
        return [{**op, "ops": [o]} for o in op["ops"]]
    if kind == "memory_op":
        ext, order = op.get("extents"), int(op.get("order", 0))
        nr = int(op.get("nr", len(ext) if ext is not None else 1))
        if not (0 <= order <= 9 and nr >= 1 and (
                ext is not None and nr <= len(ext)
                or ext is None and op["cmd"] == "increase_reservation")):
            return [op]                                   # an argument error, or nothing asked
        if op["cmd"] == "decrease_reservation" and order > 0:
            return [{**op, "order": 0, "extents": [_int(e) + j], "nr": 1}
                    for e in ext[:nr] for j in range(1 << order)]
        if nr > 1:
            if ext is None:
                return [{**op, "nr": 1} for _ in range(nr)]
            return [{**op, "extents": [e], "nr": 1} for e in ext[:nr]]
    return [op]


def _op_label(op: dict) -> str:
    """mmu_update, mmuext_op/pin_l4_table (single sub-op), memory_op/populate_physmap ..."""
    kind = op["op"]
    if kind == "mmuext_op" and len(op["ops"]) == 1:
        c = op["ops"][0][0]
        return f"{kind}/{c if isinstance(c, str) else 'cmd' + str(c)}"
    if kind == "memory_op":
        return f"{kind}/{op['cmd']}"
    if kind == "mmu_update" and len(op["reqs"]) == 1:
        t = _int(op["reqs"][0][0]) & 3
        return kind if t != MMU_MACHPHYS_UPDATE else f"{kind}/machphys"
    return kind


# ---------------------------------------------------------------------------------------
# violations and the checks
# ---------------------------------------------------------------------------------------

class FuzzViolation(AssertionError):
    """An invariant broken by call ``index`` (``op``) of a sequence."""

    def __init__(self, kind: str, detail: str, index: int, op: dict, key: str | None = None):
        self.kind, self.detail, self.index, self.op = kind, detail, index, op
        self.key = key if key is not None else kind
        super().__init__(f"{kind} after call #{index} ({_op_label(op)}): {detail}")

    @property
    def signature(self) -> tuple[str, str, str]:
        """(kind, call, key): what minimisation must preserve."""
        return (self.kind, self.op.get("op", "teardown"), self.key)


def _generic(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+|\d+", "N", text)


def _owner_array(ft, g: int):
    """The owner array of PDX group ``g`` (None: never written, every frame unowned). Read only."""
    return ft._owner[g] if 0 <= g < len(ft._owner) else None


def _owners(m: Machine, mfns: np.ndarray) -> np.ndarray:
    """Owner domid of each valid MFN, read from the frame table."""
    ft = m.frame_table
    pdx = np.asarray(m.pdx.mfn_to_pdx(np.asarray(mfns).astype(np.uint64)), dtype=np.int64)
    out = np.full(pdx.shape, DOMID_INVALID, dtype=np.int64)
    groups = pdx >> PDX_GROUP_SHIFT
    for g in np.unique(groups):
        o = _owner_array(ft, int(g))
        if o is not None:
            sel = groups == g
            out[sel] = o[pdx[sel] & PDX_GROUP_MASK]
    return out


def isolation(m: Machine) -> str | None:
    """Every present entry of every live table targets frames the table's owner owns
    (PSE: all 512); base pointers, pins and marks are the domain's own frames.
    None, or what is wrong."""
    ft = m.frame_table
    live = list(m.pt.live.items())
    if live:
        pages = np.array([p for p, _ in live], dtype=np.int64)
        levels = np.array([lv for _, (lv, _) in live], dtype=np.int64)
        owners = np.array([o for _, (_, o) in live], dtype=np.int64)
        tables = np.asarray(m.pdx.pdx_to_mfn(pages.astype(np.uint64)), dtype=np.int64)
        town = _owners(m, tables)
        if (town != owners).any():
            j = int(np.argmax(town != owners))
            return (f"live L{levels[j]} table {tables[j]:#x} of dom{owners[j]} is owned by "
                    f"dom{town[j]}")
        ent = np.stack([m.mem.table(int(t)) for t in tables])
        rows, cols = np.nonzero(ent & np.uint64(_PAGE_PRESENT))
        vals = ent[rows, cols]
        lv, ow = levels[rows], owners[rows]
        mfns = ((vals & np.uint64(PADDR_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        pse = (lv == 2) & ((vals & np.uint64(_PAGE_PSE)) != 0)
        last = mfns + np.where(pse, SUPERPAGE_PAGES - 1, 0)
        valid = m.mfn_valid_array(mfns) & m.mfn_valid_array(last)
        bad = ~valid
        ok = np.flatnonzero(valid)
        bad[ok] |= _owners(m, mfns[ok]) != ow[ok]
        for j in ok[pse[ok]]:
            page = m.mfn_to_page(int(mfns[j]))
            o = _owner_array(ft, page >> PDX_GROUP_SHIFT)
            off = page & PDX_GROUP_MASK
            bad[j] |= o is None or not (o[off:off + SUPERPAGE_PAGES] == ow[j]).all()
        if bad.any():
            j = int(np.argmax(bad))
            e, mfn, n = int(vals[j]), int(mfns[j]), SUPERPAGE_PAGES if pse[j] else 1
            where = f"dom{ow[j]}'s L{lv[j]} table {tables[rows[j]]:#x}[{cols[j]}] = {e:#x}"
            if not valid[j]:
                return f"{where} targets invalid mfn {mfn:#x}"
            o = _owners(m, np.arange(mfn, mfn + n, dtype=np.int64))
            who = int(o[np.argmax(o != ow[j])])
            return f"{where} maps mfn {mfn:#x}{'+511' if n > 1 else ''} owned by dom{who}"
    for d in m.domains.values():
        pages = [(m.mfn_to_page(d.baseptr), "base pointer")] if d.baseptr is not None else []
        pages += [(p, "pinned table") for p in d.pinned]
        for p, what in pages:
            if ft.owner(p) != d.domid:
                return (f"dom{d.domid}'s {what} {int(m.pdx_to_mfn(p)):#x} is owned by "
                        f"dom{ft.owner(p)}")
        for mfn in d.marked:
            if not (m.mfn_valid(mfn) and m.mfn_valid(mfn + SUPERPAGE_PAGES - 1)):
                return f"dom{d.domid} marked invalid superpage {mfn:#x}"
            _, _, o = ft.read_slices(m.mfn_to_page(mfn), SUPERPAGE_PAGES)
            if not (o == d.domid).all():
                return f"dom{d.domid} marked superpage {mfn:#x}, not all its own"
    return None


def state(m: Machine) -> tuple:
    """Machine.snapshot() plus what it leaves out: the design's own state (if it keeps
    any outside the superpage table) and the page-table layer's live-table records."""
    design = m.superpage.snapshot() if hasattr(m.superpage, "snapshot") else None
    return (m.snapshot(), design, tuple(sorted(m.pt.live.items())))


def same_state(m: Machine, st: tuple) -> bool:
    snap, design, live = st
    return (m.same_as(snap)
            and (m.superpage.snapshot() if hasattr(m.superpage, "snapshot") else None) == design
            and tuple(sorted(m.pt.live.items())) == live)


def differ(a: Machine, b: Machine) -> str | None:
    """The first difference between two machines of the same setup (None: equal), over
    everything :func:`state` covers. Compares in place (no snapshot copies): the
    fuzzer runs it after most calls."""
    fa, fb = a.frame_table, b.frame_table
    for g in range(fa.n_groups):
        ga = (fa._ci[g], fa._ti[g], fa._owner[g])
        gb = (fb._ci[g], fb._ti[g], fb._owner[g])
        if ga[0] is None and gb[0] is None:
            continue
        if ga[0] is None:
            ga = fa._initial_group(g)
        if gb[0] is None:
            gb = fb._initial_group(g)
        for name, x, y in zip(("count_info", "type_info", "owner"), ga, gb):
            if not np.array_equal(x, y):
                j = int(np.argmax(x != y))
                mfn = int(a.pdx_to_mfn((g << PDX_GROUP_SHIFT) + j))
                return f"mfn {mfn:#x} {name} {int(x[j]):#x} vs {int(y[j]):#x}"
    sa, sb = a.spage_table.store, b.spage_table.store
    if not np.array_equal(sa, sb):
        w, e = (int(v[0]) for v in np.nonzero(sa != sb))
        return f"superpage table entry {e} word {w}: {int(sa[w, e]):#x} vs {int(sb[w, e]):#x}"
    if a.heap.snapshot() != b.heap.snapshot():
        return "the heap's free blocks"
    if a.m2p.snapshot() != b.m2p.snapshot():
        return "the M2P"
    for k in set(a.mem._frames) | set(b.mem._frames):
        x, y = a.mem.table(k), b.mem.table(k)
        if not np.array_equal(x, y):
            i = int(np.argmax(x != y))
            return f"contents of frame {k:#x}[{i}]: {int(x[i]):#x} vs {int(y[i]):#x}"
    if set(a.domains) != set(b.domains):
        return f"domains {sorted(a.domains)} vs {sorted(b.domains)}"
    for domid, da in a.domains.items():
        db = b.domains[domid]
        for f in ("tot_pages", "max_pages", "pinned", "marked", "is_dying", "baseptr"):
            if getattr(da, f) != getattr(db, f):
                return f"dom{domid}.{f}: {getattr(da, f)} vs {getattr(db, f)}"
        for f in ("owned", "allocated"):
            if getattr(da, f).runs() != getattr(db, f).runs():
                return f"dom{domid}.{f}"
        if da.p2m.snapshot() != db.p2m.snapshot():
            return f"dom{domid}'s P2M"
    if a.pt.live != b.pt.live:
        return "the live page tables"
    if hasattr(a.superpage, "snapshot") and a.superpage.snapshot() != b.superpage.snapshot():
        return f"the {a.superpage.name} design's own state"
    return None


def heap_is_full(m: Machine) -> str | None:
    fresh = DomainHeap(m.memmap.frame_ranges)
    if m.heap.free_frames != m.memmap.ram_frames:
        return (f"heap holds {m.heap.free_frames} free frames, the machine has "
                f"{m.memmap.ram_frames} RAM frames")
    if m.heap.snapshot() != fresh.snapshot():
        return "heap's free blocks differ from a fresh heap's"
    return None


# ---------------------------------------------------------------------------------------
# the checked executor: one machine, a log of ops, checks after every op
# ---------------------------------------------------------------------------------------

class Runner:
    """A machine, the domains' names, and :meth:`step`: execute one op, then check.

    ``twin`` (default on) keeps a second machine one op behind: every op is
    replayed on it, a multi-request op as its single requests in order (the
    ``batch`` check), and a refused op is checked against it (``unchanged``).
    Without a twin, single-request ops are checked against a snapshot taken
    before them and multi-request ops only when nothing of them was done.
    ``tolerate(violation) -> bool`` lets known bugs pass: such a violation is
    counted in ``tolerated`` (first of each signature in ``seen``) and the run
    goes on, as long as the auditor and the isolation check still pass.
    """

    def __init__(self, setup: Setup, *, twin: bool = True, tolerate=None, light: bool = False):
        self.setup = setup
        #: light: only crashes, recorded Xen bugs and zombies are checked (minimisation's
        #: fast replays of such violations; the result is verified with every check)
        self.light = light
        self.m = setup.machine()
        self.doms: dict[str, int] = {"dom0": 0}
        self.t = setup.machine() if twin else None
        self.tdoms: dict[str, int] = {"dom0": 0}
        self.tolerate = tolerate
        self.tolerated: Counter = Counter()          # signature -> count
        self.seen: dict = {}                          # signature -> first tolerated violation
        self.log: list[dict] = []
        self.rcs: list[int | None] = []
        self.calls = 0
        self.by_call: Counter = Counter()
        self.refused: Counter = Counter()           # (label, errno name) -> count

    def name_of(self, domid: int) -> str:
        for name, d in self.doms.items():
            if d == domid:
                return name
        return f"dom{domid}"

    def _fail(self, kind: str, detail: str, op: dict, key: str | None = None):
        return FuzzViolation(kind, detail, len(self.log) - 1, op, key)

    def _resync(self) -> None:
        """After a tolerated violation the twin may differ: it becomes a copy of the machine."""
        if self.t is not None:
            m = self.m
            memo = {id(x): x for x in (m.memmap, m.pdx, m.hypercall.handlers)}
            self.t = copy.deepcopy(m, memo)
            self.tdoms = dict(self.doms)

    def step(self, op: dict) -> Result:
        """Execute ``op`` and check; FuzzViolation unless the violation is tolerated."""
        try:
            return self._step(op)
        except FuzzViolation as v:
            if self.tolerate is None or not self.tolerate(v):
                raise
            self.tolerated[v.signature] += 1
            self.seen.setdefault(v.signature, v)
            self._resync()
            if not self.light:
                self.check_state(op)                  # the run goes on only from a sound state
            rc = self.rcs[-1]
            return Result(rc if rc is not None else -errno.EFAULT, 0, len(singles(op)))

    def _step(self, op: dict) -> Result:
        m, t = self.m, self.t
        self.log.append(op)
        self.rcs.append(None)
        subs = singles(op)
        snap = state(m) if t is None and len(subs) == 1 and not self.light else None
        victim = self.doms.get(op.get("domain", "")) if op["op"] == "destroy_domain" else None
        nviol = len(m.violations)
        self.calls += 1
        label = _op_label(op)
        self.by_call[label] += 1
        try:
            res = execute(m, self.doms, op)
        except Exception as e:                       # RefcountBug included: never allowed out
            raise self._fail("crash", f"{type(e).__name__}: {e}", op, type(e).__name__) from e
        if not isinstance(res.rc, int):
            raise self._fail("crash", f"returned {res.rc!r}, not an int", op, "rc-type")
        self.rcs[-1] = res.rc
        if res.rc < 0:
            self.refused[(label, errno_name(res.rc))] += 1
        elif res.done < res.n:
            self.refused[(label, "short")] += 1
        unchanged = False
        if t is not None and len(subs) > 1:
            self._twin_check(op, subs, res)
        elif res.failed and (t is not None or snap is not None):
            # one request, refused: the machine must equal the one before the call
            diff = differ(m, t) if t is not None else (
                None if same_state(m, snap) else "the state")
            if diff:
                raise self._fail("unchanged", f"refused with "
                                 f"{errno_name(res.rc) if res.rc < 0 else 'nothing done'}"
                                 f" but changed: {diff}", op)
            unchanged = True                          # the twin needs no replay
        elif t is not None:
            try:
                r = execute(t, self.tdoms, op)
            except Exception as e:
                raise self._fail("batch", f"the same call on a twin machine raises "
                                 f"{type(e).__name__}: {e}", op, "twin") from e
            if r.rc != res.rc:
                raise self._fail("batch", f"rc {res.rc}, but {r.rc} on a twin machine in the "
                                 f"same state", op, "twin")
        if not unchanged and not self.light:          # an unchanged machine audits as before
            self.check_state(op)
        if len(m.violations) > nviol:
            raise self._fail("xen-bug", m.violations[-1], op, _generic(m.violations[-1].split(":")[0]))
        if victim is not None and res.rc == 0 and victim in m.domains:
            d = m.domains[victim]
            raise self._fail("zombie", f"dom{victim} still owns {len(d.owned)} frames after "
                                       f"destroy_domain", op)
        return res

    def _twin_check(self, op: dict, subs: list[dict], res: Result):
        """The op equals its single requests issued in order on the twin (the machine before it)."""
        t = self.t
        page_wise = op["op"] == "memory_op" and op["cmd"] == "decrease_reservation" and \
            int(op.get("order", 0)) > 0
        ok = 0
        fail_rc = None
        for i, sub in enumerate(subs):
            failing = i == res.done and not page_wise
            if failing:
                # the requests before the failing one: as the whole call, which must
                # have left no trace of its failing request
                diff = differ(self.m, t)
                if diff:
                    raise self._fail("batch", f"rc {res.rc} with {res.done} of {res.n} done, but "
                                     f"the machine differs from its first {res.done} requests "
                                     f"issued one by one: {diff}", op, "state")
            try:
                r = execute(t, self.tdoms, sub)
            except Exception as e:
                raise self._fail("batch", f"request {i} alone raises {type(e).__name__}: {e}",
                                 op, "single-crash") from e
            if r.failed:
                if failing:
                    diff = differ(self.m, t)
                    if diff:
                        raise self._fail("unchanged", f"request {i} alone refused with "
                                         f"{errno_name(r.rc) if r.rc < 0 else 'nothing done'} "
                                         f"but changed: {diff}", op)
                fail_rc = r.rc
                break
            ok += 1
        if op["op"] == "memory_op":
            want = (res.n if ok == len(subs) else ok >> int(op["order"])) if page_wise else ok
            if res.rc != want:
                raise self._fail("batch", f"returned {res.rc}; one extent at a time, "
                                 f"{want} extents are done", op, "count")
        elif res.done != ok or (fail_rc is not None and fail_rc != res.rc) or (
                fail_rc is None and res.rc != 0):
            raise self._fail("batch", f"rc {res.rc} done {res.done}/{res.n}; one request "
                             f"at a time: {ok} done, then "
                             f"{errno_name(fail_rc) if fail_rc is not None else 'rc 0'}",
                             op, "count")
        diff = differ(self.m, t)
        if diff:
            raise self._fail("batch", f"the machine after the call ({res.done} of {res.n} done) "
                             f"differs from issuing the requests one by one: {diff}", op, "state")

    def check_state(self, op: dict) -> None:
        rep = audit(self.m)
        if not rep.ok:
            first = rep.differences[0]
            more = f" (+{rep.total_differences - 1} more)" if rep.total_differences > 1 else ""
            raise self._fail("audit", f"{first}{more}", op, _generic(first.field))
        msg = isolation(self.m)
        if msg:
            raise self._fail("isolation", msg, op, "isolation")

    def finish(self) -> None:
        """Destroy every domain but dom0 (checked calls), then the heap must hold all RAM."""
        for domid in sorted(self.m.domains):
            if domid != 0 and domid in self.m.domains:
                self.step({"op": "destroy_domain", "domain": self.name_of(domid)})
        m = self.m
        end = {"op": "teardown"}
        if set(m.domains) != {0}:
            left = ", ".join(f"dom{d} ({len(m.domains[d].owned)} frames)" for d in m.domains if d)
            raise FuzzViolation("teardown", f"domains left after destroying every guest: {left}",
                                len(self.log), end, "zombie")
        msg = heap_is_full(m)
        if msg:
            raise FuzzViolation("teardown", msg, len(self.log), end, "heap")
        rep = audit(m)
        if not rep.ok:
            raise FuzzViolation("teardown", str(rep.differences[0]), len(self.log), end, "audit")


# ---------------------------------------------------------------------------------------
# the guests: a GuestKernel whose hypercalls are recorded and checked
# ---------------------------------------------------------------------------------------

class _MachineView:
    """The machine as a fuzzed guest kernel sees it: hypercalls go through the runner."""

    def __init__(self, fuzzer: "Fuzzer"):
        self._f = fuzzer

    def __getattr__(self, name):
        return getattr(self._f.m, name)

    def hypercall(self, caller: int, number: int, *args) -> int:
        return self._f.kernel_call(caller, number, *args)


class _Kernel(GuestKernel):
    """GuestKernel whose stores into its own frames are hypercalls too (plain mmu_update
    writes), and whose page-table pool is populated at once (one call, contiguous frames)."""

    def _alloc_table(self) -> int:
        if self._pt_free:
            return self._pt_free.pop()
        while self._pt_next < self.d.max_pages:
            gfn = self._pt_next
            self._pt_next += 1
            mfn = self.d.p2m.get(gfn)
            if mfn >= 0:
                return mfn
        raise GuestError("page-table pool exhausted")

    def _write_own(self, mfn: int, index: int, value: int) -> None:
        if self.mmu_update([((mfn << PAGE_SHIFT) | (index * 8), value)]) != 0:
            raise GuestError(f"plain write to {mfn:#x} refused ({errno_name(self.last_rc)})")


@dataclass
class _Guest:
    name: str
    domid: int
    kernel: _Kernel


def _weighted(r: random.Random, table: dict):
    keys = list(table)
    return r.choices(keys, weights=[table[k] for k in keys])[0]


#: the actions of one random call and their weights (mostly single valid-leaning calls)
ACTIONS = {
    "mmu": 30, "ext": 12, "mmu_batch": 8, "pse_batch": 4, "ext_batch": 3,
    "balloon_out": 4, "balloon_in": 5, "update_va": 4, "kernel_map": 5, "foreign": 3,
    "garbage": 1, "destroy_create": 0.4,
}
#: requests of an mmu_update
MMU_REQS = {"pse": 25, "l1": 25, "link": 12, "unmap": 12, "remap": 14, "write": 6,
            "machphys": 3, "bad_ptr": 3}
#: requests of an mmuext_op
EXT_REQS = {"pin": 25, "unpin": 14, "baseptr": 8, "mark": 25, "unmark": 22, "bad_cmd": 3}

#: how often unmap / remap pick an entry of each level
LEVEL_WEIGHTS = {1: 45, 2: 45, 3: 7, 4: 3}

_SP = SUPERPAGE_PAGES


class Fuzzer(Runner):
    """A :class:`Runner` with guests and a generator of random calls (``rng``-driven)."""

    def __init__(self, setup: Setup, rng: random.Random | int | str = 0, *, twin: bool = True,
                 tolerate=None):
        super().__init__(setup, twin=twin, tolerate=tolerate)
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self.guests: dict[str, _Guest] = {}
        self._created = 0

    # -- the kernel's hypercalls, recorded as ops ------------------------------------------
    def kernel_call(self, caller: int, number: int, *args) -> int:
        name = self.name_of(caller)
        if number == HYPERVISOR_mmu_update:
            op = {"op": "mmu_update", "domain": name, "reqs": [[r.ptr, r.val] for r in args[0]]}
        elif number == HYPERVISOR_mmuext_op:
            op = {"op": "mmuext_op", "domain": name,
                  "ops": [[MMUEXT_NAMES.get(o.cmd, o.cmd), o.arg1] for o in args[0]]}
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
        res = self.step(op)
        if number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) and len(args) > 1 and args[1] is not None:
            args[1][0] = res.done
        if number == HYPERVISOR_memory_op and args[1].extent_start is not None and res.out:
            args[1].extent_start[:] = res.out
        return res.rc

    # -- guests ----------------------------------------------------------------------------
    def start(self) -> None:
        for _ in range(self.setup.domains):
            self.new_guest()

    def new_guest(self) -> _Guest | None:
        """dom0 creates a guest; the guest populates memory, builds its tree, maps, marks."""
        s = self.setup
        self._created += 1
        name = f"g{self._created}"
        res = self.step({"op": "create_domain", "name": name, "max_pages": s.max_pages})
        if res.rc <= 0:
            return None
        k = _Kernel(_MachineView(self), res.rc, pt_pool_pages=POOL)
        g = self.guests[name] = _Guest(name, res.rc, k)
        try:
            k.populate(0, s.superpages * _SP)
            k.populate(s.small_gfn, s.small_pages, superpages=False)
            k.populate(k.pt_base, POOL, superpages=False)
            if k.build() != 0:
                return g
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

    def live_guests(self) -> list[_Guest]:
        m = self.m
        return [g for g in self.guests.values()
                if g.domid in m.domains and not m.domains[g.domid].is_dying]

    # -- reading what a guest knows ---------------------------------------------------------
    def tables(self, g: _Guest) -> dict[int, list[int]]:
        """Level -> MFNs of the guest's live tables."""
        out: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
        m = self.m
        for page, (level, owner) in m.pt.live.items():
            if owner == g.domid:
                out[level].append(int(m.pdx_to_mfn(page)))
        return out

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

    def _small(self, g: _Guest, r: random.Random) -> int | None:
        """A frame of the guest's 4 KiB region (fresh-table candidates), else any own frame."""
        d = self.m.domains[g.domid]
        base = self.setup.small_gfn
        for _ in range(4):
            mfn = d.p2m.get(base + r.randrange(_SP))
            if mfn >= 0:
                return mfn
        return self._own(g.domid, r)

    def _others(self, g: _Guest) -> list[int]:
        return [d for d in self.m.domains if d not in (0, g.domid)]

    def frame(self, g: _Guest, r: random.Random, own: float = 0.72) -> int:
        """A 4 KiB target: mostly the guest's own, else a table, foreign, free, hole, out of range."""
        x = r.random()
        if x < own:
            f = self._own(g.domid, r)
            if f is not None:
                return f
        kind = r.choice(["table", "foreign", "foreign", "free", "hole", "oor", "oor"])
        return self._odd_frame(g, r, kind)

    def _odd_frame(self, g: _Guest, r: random.Random, kind: str) -> int:
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

    def superpage(self, g: _Guest, r: random.Random, own: float = 0.78) -> int:
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
    def req(self, g: _Guest, r: random.Random, kind: str | None = None) -> list[int]:
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
            elif x < 0.8 and t[level]:
                # a linear entry: to a table of its own level, itself or another (loops
                # too); read-only, else refused
                child = parent if r.random() < 0.3 else r.choice(t[level])
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
    def ext(self, g: _Guest, r: random.Random, kind: str | None = None) -> list:
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
            return ["new_baseptr", mfn]
        if kind in ("mark", "unmark"):
            if kind == "unmark" and d.marked and r.random() < 0.5:
                return ["unmark_super", r.choice(sorted(d.marked))]
            return [f"{kind}_super", self.superpage(g, r)]
        return [r.choice([6, 7, 18, 21, 99]), self._own(g.domid, r) or 0]

    # -- actions (one or a few calls) -----------------------------------------------------------
    def random_call(self, r: random.Random | None = None) -> None:
        r = r or self.rng
        self.act(_weighted(r, ACTIONS), r)

    def act(self, action: str, r: random.Random | None = None) -> None:
        """Perform one action (a call, or dom0's destroy + create + the new guest's setup)."""
        r = r or self.rng
        guests = self.live_guests()
        if not guests:                                # every guest was destroyed: a new one
            self.new_guest()
            return
        g = r.choice(guests)
        getattr(self, f"_a_{action}")(g, r)

    def _mmu(self, g: _Guest, reqs: list, foreign: str | None = None) -> Result:
        op = {"op": "mmu_update", "domain": g.name, "reqs": reqs}
        if foreign is not None:
            op["foreign"] = foreign
        return self.step(op)

    def _mmuext(self, g: _Guest | str, ops: list, foreign: str | None = None) -> Result:
        op = {"op": "mmuext_op", "domain": g if isinstance(g, str) else g.name, "ops": ops}
        if foreign is not None:
            op["foreign"] = foreign
        return self.step(op)

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
            empty = [s.small_gfn + i for i in range(_SP) if d.p2m.get(s.small_gfn + i) < 0]
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

    def reachable(self, g: _Guest) -> tuple[list[int], list[int]]:
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
        self.step({"op": "update_va_mapping", "domain": g.name, "va": va, "val": val})

    def refresh_kernel(self, g: _Guest) -> None:
        """The kernel forgets tables that hostile calls unlinked (it knows what it did):
        its root is the vCPU's base pointer, its cached tables must still be live at their
        level; forgotten frames go back to its pool (stale entries and all)."""
        k, m = g.kernel, self.m
        d = m.domains[g.domid]
        k.root = d.baseptr
        live = m.pt.live
        for key, mfn in list(k.tables.items()):
            if live.get(m.mfn_to_page(mfn)) != (key[0], g.domid):
                del k.tables[key]
                if mfn in d.owned and mfn not in k._pt_free:
                    k._pt_free.append(mfn)

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

    def _a_destroy_create(self, g, r):
        self.step({"op": "destroy_domain", "domain": g.name})
        self.guests.pop(g.name, None)
        self.new_guest()


# ---------------------------------------------------------------------------------------
# episodes, campaigns, replay and minimisation
# ---------------------------------------------------------------------------------------

@dataclass
class Episode:
    """One fresh machine: setup, about ``calls`` random calls, teardown.

    ``violation`` ended it (None: it ran to the end); ``seen`` are the tolerated
    ones, first of each signature."""
    seed: str
    calls: int
    log: list[dict]
    rcs: list
    violation: FuzzViolation | None
    seen: list
    tolerated: Counter
    by_call: Counter
    refused: Counter
    #: Ctrl-C stopped it (no teardown check; the counts are the calls made)
    interrupted: bool = False

    @property
    def violations(self) -> list[FuzzViolation]:
        return list(self.seen) + ([self.violation] if self.violation is not None else [])


def run_episode(setup: Setup, seed, calls: int, *, twin: bool = True, tolerate=None,
                tick=None) -> Episode:
    """Set the guests up, make about ``calls`` calls (setup and teardown included), tear down.
    ``tick(calls)`` after each call (a progress bar); Ctrl-C ends it ``interrupted``."""
    f = Fuzzer(setup, random.Random(str(seed)), twin=twin, tolerate=tolerate)
    viol = None
    interrupted = False
    try:
        f.start()
        while f.calls < calls:
            f.random_call()
            if tick is not None:
                tick(f.calls)
        f.finish()
    except FuzzViolation as v:
        viol = v
    except KeyboardInterrupt:
        interrupted = True
    return Episode(str(seed), f.calls, f.log, f.rcs, viol, list(f.seen.values()), f.tolerated,
                   f.by_call, f.refused, interrupted)


def replay_ops(setup: Setup, ops: list[dict], *, twin: bool = True, finish: bool = True,
               tolerate=None, light: bool = False):
    """Replay ``ops`` on a fresh machine with every check; then (``finish``) destroy every
    guest and check the heap. Returns (violation or None, the Runner)."""
    run = Runner(setup, twin=twin, tolerate=tolerate, light=light)
    try:
        for op in ops:
            run.step(op)
        if finish:
            run.finish()
    except FuzzViolation as v:
        return v, run
    return None, run


def _ddmin(items: list, test, budget) -> list:
    """Zeller's delta debugging (complements first): a 1-minimal sublist with ``test`` true."""
    n = 2
    while len(items) >= 2 and budget():
        chunk = math.ceil(len(items) / n)
        for i in range(0, len(items), chunk):
            comp = items[:i] + items[i + chunk:]
            if comp and test(comp):
                items = comp
                n = max(n - 1, 2)
                break
            if not budget():
                return items
        else:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return items


def minimise(setup: Setup, ops: list[dict], signature: tuple, *, rcs: list | None = None,
             max_seconds: float = 120.0, twin: bool = True, tolerate=None) -> list[dict]:
    """A short call list (delta debugging, 1-minimal unless the time runs out) whose replay
    from scratch gives a violation with ``signature``; batches are shrunk request by request
    too. ``tolerate``: other known violations that may happen on the way.

    Crashes, recorded Xen bugs and zombies are first minimised with light replays (no
    audit, no twin: several times faster); the result must then reproduce with every
    check, else the minimisation is redone with every check."""
    deadline = time.monotonic() + max_seconds

    def tol(v):
        return v.signature != signature and tolerate is not None and tolerate(v)

    def budget() -> bool:
        return time.monotonic() < deadline

    def shrink(ops: list[dict], light: bool) -> list[dict]:
        # only the batch and unchanged checks need the twin machine (twice the work)
        tw = twin and not light and signature[0] in ("batch", "unchanged")

        def fails(cand: list[dict]) -> bool:
            v, _ = replay_ops(setup, cand, twin=tw, tolerate=tol, light=light)
            return v is not None and v.signature == signature

        if not fails(ops):
            return ops
        # refused calls must leave no trace: try dropping them all at once first
        if rcs is not None:
            keep = [op for i, op in enumerate(ops)
                    if i == len(ops) - 1 or i >= len(rcs) or rcs[i] is None or rcs[i] >= 0]
            if len(keep) < len(ops) and fails(keep):
                ops = keep
        ops = _ddmin(list(ops), fails, budget)
        # then each batch's requests (or extents)
        for i in range(len(ops)):
            op = ops[i]
            key = {"mmu_update": "reqs", "mmuext_op": "ops"}.get(op["op"])
            if key is None and op["op"] == "memory_op" and op.get("extents") and "nr" not in op:
                key = "extents"
            if key is None or len(op[key]) < 2 or not budget():
                continue

            def with_items(items, i=i, key=key):
                return ops[:i] + [{**ops[i], key: items}] + ops[i + 1:]

            items = _ddmin(list(op[key]), lambda it: fails(with_items(it)), budget)
            ops = with_items(items)
        return ops

    if signature[0] in ("crash", "xen-bug", "zombie"):
        small = shrink(list(ops), light=True)
        v, _ = replay_ops(setup, small, twin=twin, tolerate=tol)
        if v is not None and v.signature == signature:
            return small
    return shrink(list(ops), light=False)


# ---------------------------------------------------------------------------------------
# the script workload (YAML)
# ---------------------------------------------------------------------------------------

_HEX_KEYS = ("va", "val")


def _fmt(v, hexa: bool = False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:#x}" if hexa and v >= 0 else str(v)
    if v is None:
        return "null"
    if isinstance(v, str):
        return v if re.fullmatch(r"[A-Za-z_][\w.-]*", v) and v not in ("null", "true", "false", "yes", "no", "on", "off") else f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x, hexa) for x in v) + "]"
    raise TypeError(f"cannot write {v!r}")


def _op_line(op: dict) -> str:
    parts = []
    for k, v in op.items():
        hexa = k in _HEX_KEYS or k in ("reqs", "ops", "extents") and op["op"] != "memory_op" or \
            k == "extents" and op.get("cmd") == "decrease_reservation"
        parts.append(f"{k}: {_fmt(v, hexa)}")
    return "{" + ", ".join(parts) + "}"


def to_script_yaml(setup: Setup, ops: list[dict], *, rcs: list | None = None,
                   comment: str | None = None) -> str:
    """A config file (machine, hypervisor, ``workload: {kind: script, ops: [...]}``)
    replaying ``ops``; ``rcs`` (what each call returned) are written as comments."""
    lines = []
    for c in (comment or "").splitlines():
        lines.append(f"# {c}".rstrip())
    lines.append("# replay: xensim run FILE")
    cfg = setup.config()
    lines.append("machine:")
    lines.append("  memory_map:")
    for s, e in cfg["machine"]["memory_map"]:
        lines.append(f"    - [{s:#x}, {e:#x}]")
    lines.append(f"  pdx: {cfg['machine']['pdx']}")
    hv = cfg["hypervisor"]
    lines.append("hypervisor:")
    lines.append(f"  version: \"{hv['version']}\"")
    lines.append(f"  superpage: {hv['superpage']}")
    lines.append(f"  allow_superpage: {_fmt(hv['allow_superpage'])}")
    lines.append(f"  faithful: {_fmt(hv['faithful'])}")
    lines.append("workload:")
    lines.append("  kind: script")
    lines.append("  ops:")
    for i, op in enumerate(ops):
        line = f"    - {_op_line(op)}"
        if rcs is not None and i < len(rcs) and rcs[i] is not None:
            rc = rcs[i]
            line += f"   # rc {rc}" + (f" ({errno_name(rc)})" if rc < 0 else "")
        lines.append(line)
    return "\n".join(lines) + "\n"


def load_script(path_or_text) -> tuple[Setup, list[dict]]:
    """(setup, ops) of a script workload file (or its text)."""
    text = path_or_text
    if isinstance(path_or_text, Path) or "\n" not in str(path_or_text):
        text = Path(path_or_text).read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    wl = data.get("workload") or {}
    if wl.get("kind") != "script":
        raise ValueError("not a script workload (workload.kind must be 'script')")
    ops = [dict(op) for op in wl.get("ops") or []]
    for i, op in enumerate(ops):
        if op.get("op") not in OPS:
            raise ValueError(f"workload.ops[{i}]: unknown op {op.get('op')!r} (one of {', '.join(OPS)})")
    return Setup.from_config(data), ops


@dataclass
class Replay:
    """What replaying a script gave: the first violation (or None) and every call's rc."""
    violation: FuzzViolation | None
    rcs: list
    calls: int

    def __str__(self) -> str:
        if self.violation is None:
            return f"replayed {self.calls} calls: no violation"
        return f"replayed {self.calls} calls: {self.violation}"


def is_reproducer(path) -> bool:
    """Is ``path`` a reproducer written by the fuzzer (a ``script`` workload of raw
    hypercall ``ops``)? ``xensim run`` replays such a file with every check."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    wl = data.get("workload") if isinstance(data, dict) else None
    return isinstance(wl, dict) and wl.get("kind") == "script" and "ops" in wl


def replay(yaml_path, *, finish: bool = True) -> Replay:
    """Replay a script workload written by :func:`to_script_yaml`, with every check."""
    setup, ops = load_script(yaml_path)
    v, run = replay_ops(setup, ops, finish=finish)
    return Replay(v, run.rcs, run.calls)


# ---------------------------------------------------------------------------------------
# campaigns and the command
# ---------------------------------------------------------------------------------------

@dataclass
class Finding:
    violation: FuzzViolation
    seed: str
    count: int = 1
    minimal: list[dict] | None = None
    minimal_rcs: list | None = None
    #: ``minimal`` was minimised (not: --no-minimise, or Ctrl-C came first)
    minimised: bool = False


@dataclass
class Campaign:
    setup: Setup
    seed: int
    calls: int = 0
    episodes: int = 0
    seconds: float = 0.0
    by_call: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    findings: dict = field(default_factory=dict)          # signature -> Finding
    #: Ctrl-C stopped it: what is counted is what was done so far
    interrupted: bool = False

    @property
    def violations(self) -> int:
        return sum(f.count for f in self.findings.values())

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


#: what ``keep_going`` tolerates: violations after which the machine may still be sound
#: (the run goes on only if the auditor and the isolation check then pass)
def keep_going(v: FuzzViolation) -> bool:
    return v.kind in ("crash", "unchanged", "batch", "xen-bug", "zombie")


def campaign(setup: Setup, calls: int, seed: int = 0, *, episode_calls: int = 1000,
             minimise_findings: bool = True, minimise_seconds: float = 120.0,
             twin: bool = True, tolerate=None, progress=None,
             max_findings: int | None = None, tick=None) -> Campaign:
    """Episodes of about ``episode_calls`` calls until ``calls`` calls were made (or
    ``max_findings`` distinct violations were found). ``tick(calls)`` after every call.

    Each distinct violation (by signature) is minimised once, replaying with the
    same ``tolerate`` for the others; later ones only count. Ctrl-C ends the campaign
    ``interrupted`` with what was done so far (a violation being minimised is kept whole)."""
    c = Campaign(setup, seed)
    t0 = time.perf_counter()
    i = 0
    try:
        while c.calls < calls and (max_findings is None or len(c.findings) < max_findings):
            base = c.calls
            ep = run_episode(setup, f"{seed}/{i}", min(episode_calls, max(calls - c.calls, 1)),
                             twin=twin, tolerate=tolerate,
                             tick=None if tick is None else (lambda n: tick(base + n)))
            c.interrupted = ep.interrupted
            i += 1
            c.episodes += 1
            c.calls += ep.calls
            c.by_call.update(ep.by_call)
            c.refused.update(ep.refused)
            counts = Counter(ep.tolerated)
            if ep.violation is not None:
                counts[ep.violation.signature] += 1
            for v in ep.violations:
                sig = v.signature
                if sig in c.findings:
                    c.findings[sig].count += counts[sig]
                    continue
                if max_findings is not None and len(c.findings) >= max_findings:
                    break
                fnd = c.findings[sig] = Finding(v, ep.seed, counts[sig])
                ops = ep.log[:v.index + 1]
                fnd.minimal, fnd.minimal_rcs = ops, ep.rcs[:len(ops)]
                if c.interrupted:
                    continue                             # no minimising after a Ctrl-C
                try:
                    if minimise_findings:
                        fnd.minimal = minimise(setup, ops, sig, rcs=ep.rcs,
                                               max_seconds=minimise_seconds, twin=twin,
                                               tolerate=tolerate)
                        fnd.minimised = True
                    tol = (lambda x, sig=sig: x.signature != sig and tolerate(x)) if tolerate else None
                    _, run = replay_ops(setup, fnd.minimal, twin=twin, tolerate=tol)
                    fnd.minimal_rcs = run.rcs
                except KeyboardInterrupt:
                    fnd.minimal, fnd.minimal_rcs = ops, ep.rcs[:len(ops)]
                    fnd.minimised = False
                    c.interrupted = True
            c.seconds = time.perf_counter() - t0
            if c.interrupted:
                break
            if progress is not None:
                progress(c, calls)
    except KeyboardInterrupt:                # between episodes
        c.interrupted = True
    c.seconds = time.perf_counter() - t0
    return c


def finding_yaml(c: Campaign, f: Finding) -> str:
    v = f.violation
    what = "minimal reproducer" if f.minimised else "reproducer (not minimised)"
    comment = (f"xensim fuzz: {what} ({len(f.minimal or [])} calls) of a violation\n"
               f"found by episode {f.seed} (design {c.setup.design}, Xen {c.setup.version}"
               f"{', faithful' if c.setup.faithful else ''}), seen {f.count} time(s):\n{v}")
    return to_script_yaml(c.setup, f.minimal or [], rcs=f.minimal_rcs, comment=comment)


def reproducer_path(out, k: int) -> Path:
    """The k-th reproducer's file (1-based) for ``--out FILE``: ``repro.yaml`` ->
    ``repro-1.yaml``, ``repro-2.yaml``, ..."""
    p = Path(out)
    return p.with_name(f"{p.stem}-{k}{p.suffix or '.yaml'}")


def report(c: Campaign, files: list | None = None) -> str:
    """The campaign's summary; one line per distinct violation (its signature, the
    calls of its reproducer, the file it was written to: ``files[k]``)."""
    s = c.setup
    out = [f"xensim fuzz: design {s.design}, Xen {s.version}"
           f"{' (faithful)' if s.faithful else ''}, {s.domains} domains, seed {c.seed}",
           f"calls made: {c.calls:,} in {c.episodes} episode(s), {c.seconds:.1f} s "
           f"({c.rate:,.0f} calls/s)" + (", interrupted: a partial summary" if c.interrupted else ""),
           ""]
    width = max([len(k) for k in c.by_call] + [4])
    out.append(f"{'call':<{width}}  {'calls':>9}  refused by errno")
    for label in sorted(c.by_call):
        ref = sorted(((e, n) for (lab, e), n in c.refused.items() if lab == label),
                     key=lambda x: (-x[1], x[0]))
        text = ", ".join(f"{e} {n:,}" for e, n in ref) or "-"
        out.append(f"{label:<{width}}  {c.by_call[label]:>9,}  {text}")
    total_ref = sum(n for (_, e), n in c.refused.items() if e != "short")
    out += ["", f"refused calls: {total_ref:,} of {c.calls:,}",
            f"violations: {c.violations}" + (" (0 expected)" if not s.faithful else
                                            " (faithful mode reproduces Xen's bugs)")]
    if c.findings:
        out += ["", "reproducers (`xensim run FILE` replays one with every check):"]
    for k, f in enumerate(c.findings.values()):
        kind, call, key = f.violation.signature
        where = str(files[k]) if files else "not written (--out FILE writes them)"
        out.append(f"  {k + 1}. {kind} in {call} ({key}), {f.count}x: "
                   f"{len(f.minimal or [])} calls -> {where}")
    return "\n".join(out) + "\n"


def add_parser(subparsers) -> None:
    """Register ``xensim fuzz`` on an argparse subparsers object."""
    p = subparsers.add_parser("fuzz", help="hostile-guest fuzzer: random hypercalls, checked after every call",
                              description="Run random valid and invalid hypercalls from several PV "
                                          "guests and check the machine after every call "
                                          "(see docs/fuzzing.md). Exit 0: no violation, 1: "
                                          "violations, 2: bad arguments, 130: interrupted "
                                          "(after the summary of the calls made).")
    p.add_argument("--design", default="xen-4.1", help="superpage design (default xen-4.1)")
    p.add_argument("--calls", type=int, default=10_000, help="calls to make (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--domains", type=int, default=3,
                   help=f"guests at a time, {MIN_DOMAINS}-{MAX_DOMAINS} (default 3)")
    p.add_argument("--version", default="4.8", choices=RELEASE_NAMES,
                   help="Xen release (default 4.8)")
    p.add_argument("--faithful", action="store_true",
                   help="reproduce Xen's known bugs (violations are then expected)")
    p.add_argument("--pdx", default="none", choices=("none", "mask", "offset"),
                   help="PDX compression (default none)")
    p.add_argument("--episode", type=int, default=1000, metavar="N",
                   help="calls per fresh machine (default 1000)")
    p.add_argument("--no-minimise", action="store_true", help="report violations unminimised")
    p.add_argument("--keep-going", action="store_true",
                   help="go on past a crash, an unchanged/batch failure, a recorded Xen bug or a "
                        "zombie when the machine still audits clean (finds more than the first bug)")
    p.add_argument("--max-findings", type=int, metavar="N",
                   help="stop once N distinct violations were found (and minimised)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (drawn on a terminal only, after ~2 s)")
    p.add_argument("--out", metavar="FILE",
                   help="write the minimal reproducer of each distinct violation: --out "
                        "repro.yaml writes repro-1.yaml, repro-2.yaml, ... (script workloads "
                        "that `xensim run` replays)")
    p.set_defaults(func=cmd_fuzz)


#: --domains: guests alive at a time (eight of the default set-up fill the machine)
MIN_DOMAINS, MAX_DOMAINS = 1, 8


def bad_arguments(args, names: list[str]) -> list[str]:
    """One message per bad argument of ``xensim fuzz``."""
    bad = []
    if args.design not in names:
        bad.append(f"--design: unknown design {args.design!r}; choose from {', '.join(names)}")
    if not MIN_DOMAINS <= args.domains <= MAX_DOMAINS:
        bad.append(f"--domains: must be {MIN_DOMAINS}-{MAX_DOMAINS}, got {args.domains}")
    if args.calls < 1:
        bad.append(f"--calls: must be at least 1, got {args.calls}")
    if getattr(args, "episode", 1000) < 1:
        bad.append(f"--episode: must be at least 1, got {args.episode}")
    if getattr(args, "max_findings", None) is not None and args.max_findings < 1:
        bad.append(f"--max-findings: must be at least 1, got {args.max_findings}")
    return bad


def cmd_fuzz(args) -> int:
    """``xensim fuzz``: 0 when no violation was found, 1 otherwise (2: bad arguments,
    130: interrupted, after the summary of what was done)."""
    from ..output import EXIT_INTERRUPTED, sigint_deferred
    from ..output import Progress
    bad = bad_arguments(args, designs())
    if bad:
        for line in bad:
            print(f"xensim: error: {line}", file=sys.stderr)
        return 2
    setup = Setup(design=args.design, version=args.version, faithful=args.faithful,
                  domains=args.domains, pdx=getattr(args, "pdx", "none"))
    bar = Progress.off() if args.quiet else Progress()
    bar.start("fuzz", args.calls, unit="calls")
    c = campaign(setup, args.calls, args.seed, episode_calls=getattr(args, "episode", 1000),
                 minimise_findings=not getattr(args, "no_minimise", False),
                 tolerate=keep_going if getattr(args, "keep_going", False) else None,
                 max_findings=getattr(args, "max_findings", None),
                 tick=lambda n: bar.update(min(n, args.calls)))
    bar.close()
    files = None
    if args.out and c.findings:
        files = [reproducer_path(args.out, k + 1) for k in range(len(c.findings))]
        with sigint_deferred():                   # each reproducer whole, or not at all
            for path, f in zip(files, c.findings.values()):
                write_atomic(path, finding_yaml(c, f))
    sys.stdout.write(report(c, files))
    if args.out and not c.findings:
        sys.stdout.write(f"no violation: nothing written to {args.out}\n")
    if c.interrupted:
        sys.stdout.flush()
        print(f"xensim: interrupted after {c.calls:,} calls", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if c.findings else 0
