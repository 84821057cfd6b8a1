"""One run of a config on a design, step by step: the :class:`Session`.

:func:`start` boots a fresh :class:`~xensim.xen.Machine` from the config with the
design swapped in, then sets the run up as every command that replays a config
does: dom0 creates the config's domains in order, each is populated in 2 MiB
extents, its page-table tree built and pinned, and every L2/L1 table the workload
will use created (without PV superpages, also one page-table frame reserved per
superpage slot, for the 2 MiB fallback's L1 tables). :meth:`Session.steps` then applies the workload's operations
from the config's seed, one at a time, yielding a :class:`Step` after each.

``xensim run`` (:func:`~xensim.sim.run_design`: audits, counters, teardown),
``xensim trace`` / ``inspect`` and the pictures all replay a run through this.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from .._errors import ConfigError
from ..config import Config, line_of
from ..guest import DomainSpec, GuestError, GuestKernel, Op, Workload, apply, make_workload
from ..mem import MemoryMap, format_size
from ..xen import Machine, errno_name


def config_workload(cfg: Config) -> Workload:
    """The config's workload bound to the config's domains."""
    return make_workload(cfg.effective_workload(),
                         [DomainSpec(n, mem) for n, mem in cfg.domain_specs()], cfg.seed)


def set_up_domains(m: Machine, cfg: Config, wl: Workload) -> dict[str, GuestKernel]:
    """Create, populate and build every domain of ``wl`` on ``m``, and the tables the
    workload needs -> guest kernels by domain name (:meth:`Session.set_up`)."""
    kernels = {}
    for spec, (i, _, _), vcpus in zip(wl.domains, cfg.domain_entries(), cfg.domain_vcpus()):
        lay = wl.layout[spec.name]
        pool = lay.pool_pages(fallback=not m.pv_superpages, vcpus=vcpus)
        domid = m.create_domain(spec.name, spec.pages + pool, vcpus=vcpus)
        k = GuestKernel(m, domid, pt_pool_pages=pool)
        free = m.heap.free_frames << 12
        done = k.populate(0, spec.pages)
        if done != spec.superpages:
            why = errno_name(done) if done < 0 else f"{done} of {spec.superpages} 2 MiB extents"
            path = f"domains[{i}].memory"
            raise ConfigError(cfg.source, path,
                              f"domain '{spec.name}' ({format_size(spec.memory)}) does not fit "
                              f"on {m.memmap.name} ({format_size(m.memmap.ram_bytes)} of RAM, "
                              f"{format_size(free)} free for it): populate_physmap gave {why}",
                              line_of(path, cfg.key_lines))
        rc = k.build()
        for va, level in lay.table_vas():
            if rc == 0:
                _, rc = k.ensure_table(va, level)
        if rc == 0 and not m.pv_superpages:      # the 2 MiB fallback's L1 tables, one per slot
            k.reserve_l1_tables(len(lay.slots))
        if rc == 0 and lay.process:              # the frames of the process an exec builds
            k.reserve_tables(lay.process)
        if rc != 0:
            raise RuntimeError(f"domain '{spec.name}': building its page tables failed "
                               f"({errno_name(rc)})")
        kernels[spec.name] = k
    return kernels


@dataclass(frozen=True)
class Counters:
    """The machine's counters at one moment (a run reports differences of two)."""
    #: frame reference operations (RefStats.as_dict: get_page, get_page_type ..., tlb_flushes)
    refcount: dict
    #: the design's superpage counters (fast_get, slow_get ...)
    superpage: dict
    #: per hypercall: (calls, Counter of errno names)
    hypercalls: dict
    #: page-table entry changes by mod_lN_entry (fast_path, slow_path)
    entry_updates: dict


@dataclass(frozen=True)
class Step:
    """One workload operation applied: ``index`` (0-based), the op and its outcome."""
    index: int
    op: Op
    #: every hypercall of the operation succeeded
    ok: bool
    #: why it failed: the last errno's name, or "partly done"; None if ok or refused
    errno: str | None = None
    #: the guest kernel refused it itself (no hypercall): GuestError's text, else None
    refused: str | None = None
    #: get_page_type calls the operation made
    type_refs: int = 0

    @property
    def why(self) -> str | None:
        """Why it failed, in words (None if it did not)."""
        if self.refused is not None:
            return f"refused by the guest kernel: {self.refused}"
        return self.errno


class Session:
    """A machine booted on one design with the config's domains set up, and the
    workload's operations to apply to it (:meth:`steps`)."""

    def __init__(self, cfg: Config, memmap: MemoryMap, design: str,
                 workload: Workload | None = None):
        """Boot the machine (no domain yet but dom0): :meth:`set_up` creates them."""
        self.config = cfg
        self.design = design
        self.workload = workload or config_workload(cfg)
        c = dataclasses.replace(cfg, hypervisor=dataclasses.replace(cfg.hypervisor,
                                                                    superpage=design))
        self.machine = Machine.from_config(c, memmap)
        #: the heap's free frames at boot (all must be back after :meth:`teardown`)
        self.boot_free = self.machine.heap.free_frames
        #: guest kernels by domain name (after :meth:`set_up`)
        self.kernels: dict[str, GuestKernel] = {}
        #: operations applied
        self.ops_done = 0

    def set_up(self) -> None:
        """Create, populate and build every domain, and the tables the workload needs.

        A domain that does not fit in RAM is a ConfigError (the config's line); a
        page-table tree that cannot be built is a RuntimeError."""
        self.kernels = set_up_domains(self.machine, self.config, self.workload)

    def steps(self, limit: int | None = None,
              before: Callable[[int, Op], None] | None = None) -> Iterator[Step]:
        """Apply the workload's operations in order (the first ``limit`` of the whole
        run), yielding a :class:`Step` after each; ``before(index, op)`` is called
        just before each is applied. An exception (a bug) propagates, with
        :attr:`ops_done` the operations completed before it."""
        m = self.machine
        for i, op in enumerate(self.workload.ops(self.config.seed)):
            if limit is not None and i >= limit:
                return
            if i < self.ops_done:
                continue
            if before is not None:
                before(i, op)
            k = self.kernels[op.domain]
            types0 = m.refs.stats.get_page_type
            refused = errno = None
            try:
                ok = apply(op, k)
                if not ok:
                    errno = errno_name(k.last_rc) if k.last_rc < 0 else "partly done"
            except GuestError as e:
                ok, refused = False, str(e)
            step = Step(i, op, ok, errno, refused, m.refs.stats.get_page_type - types0)
            self.ops_done = i + 1
            yield step

    def run(self, limit: int | None = None) -> int:
        """Apply the operations not applied yet (up to the first ``limit`` of the run)
        -> :attr:`ops_done`."""
        for _ in self.steps(limit):
            pass
        return self.ops_done

    def counters(self) -> Counters:
        """The machine's counters now (copies)."""
        m = self.machine
        return Counters(m.refs.stats.as_dict(), dict(m.superpage.stats),
                        {k: (v.calls, Counter(v.errors)) for k, v in m.hypercall.stats.items()},
                        dict(m.pt_stats))

    def teardown(self) -> tuple[int, int]:
        """The toolstack destroys every guest -> (frames leaked from the heap since
        boot, domains left besides dom0)."""
        m = self.machine
        for k in self.kernels.values():
            m.destroy_domain(k.domid)
        return self.boot_free - m.heap.free_frames, len(m.domains) - 1


def start(cfg: Config, memmap: MemoryMap, design: str,
          workload: Workload | None = None) -> Session:
    """A fresh machine on ``design`` with ``cfg``'s domains set up (``workload``:
    default the config's own): iterate :meth:`Session.steps` to run it."""
    s = Session(cfg, memmap, design, workload)
    s.set_up()
    return s
