"""The fuzzed machine and the guests' layout: :class:`Setup`, everything that determines
a fresh machine (its RAM with a hole and a ragged end, the Xen release, the design) and
the shape each guest is set up with (docs/fuzzing.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config, build_memory_map
from ..designs import default_design, design_class, load_design_files
from ..mem import KiB, MemoryMap, MiB, SUPERPAGE_PAGES
from ..xen import Machine, Release, parse_preemption, release_label
from ._preemption import FuzzPreemption

__all__ = ["DEFAULT_RAM", "POOL", "AUDIT_MODES", "Setup"]

#: Setup.audit's choices (xensim fuzz --audit)
AUDIT_MODES = ("incremental", "full", "both")

#: the default machine: RAM [0, 48 MiB) and [65 MiB, 127.5 MiB): a 17 MiB hole whose
#: last superpage is half RAM, and a last superpage that is three quarters RAM (valid MFN,
#: mfn+511 beyond max_page). Frames in the hole are mfn_valid (same PDX group as RAM).
DEFAULT_RAM = ((0, 48 * MiB), (65 * MiB, 127 * MiB + 512 * KiB))

#: 4 KiB frames of each guest's page-table pool (GuestKernel's)
POOL = 64


@dataclass(frozen=True)
class Setup:
    """Everything that determines a fresh machine and the guests' initial shape, and how
    the machine is audited after each call."""
    design: str = field(default_factory=default_design)
    version: str = "4.8"
    faithful: bool = False
    allow_superpage: bool = True
    #: Xen's pv-linear-pt option (4.10 on)
    pv_linear_pt: bool = True
    domains: int = 3
    #: vCPUs of each guest (with several, calls come from any of them and NEW_USER_BASEPTR
    #: is generated)
    vcpus: int = 1
    ram: tuple = DEFAULT_RAM
    pdx: str = "none"
    #: 2 MiB extents each guest populates at start (GPFN 0 on)
    superpages: int = 6
    #: 4 KiB extents each guest populates at start (in its 4 KiB region)
    small_pages: int = 24
    #: the design files to load first (absolute paths: a user design's file, which the
    #: reproducers carry as ``design_files:``)
    design_files: tuple = ()
    #: how the machine is audited after each call: "incremental" (what the call changed,
    #: with a full audit every ``full_audit_every`` checks and at the end), "full" (every
    #: frame, every time) or "both" (both every time; a disagreement is a violation)
    audit: str = "incremental"
    #: in incremental mode, a full audit every N checks too (0: at the end only)
    full_audit_every: int = 1000
    #: the guests also grant, map and unmap grants (xensim fuzz --no-grants: not)
    grants: bool = True
    #: the probability that each ``hypercall_preempt_check()`` answers true (xensim fuzz
    #: --preempt; 0: the machine is never preempted)
    preempt: float = 0.0

    @property
    def release_label(self) -> str:
        """Which Xen the campaign fuzzes ("Xen 4.8"; on 4.22 a superpage design is
        hypothetical, and says so)."""
        load_design_files(self.design_files)
        return release_label(Release.parse(self.version), design_class(self.design).supports_pse,
                             self.design)

    def machine(self) -> Machine:
        load_design_files(self.design_files)          # a no-op once loaded (any process)
        m = Machine(MemoryMap([tuple(r) for r in self.ram], name="fuzz"), self.pdx,
                    version=self.version, allow_superpage=self.allow_superpage,
                    pv_linear_pt=self.pv_linear_pt,
                    superpage=self.design, faithful=self.faithful)
        if self.preempt > 0:
            # every check asked; which answer true is each call's (fuzz/_preemption.py)
            m.set_preempt(FuzzPreemption(self.preempt))
        return m

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
        """The machine and hypervisor sections of a config file (and its design_files)."""
        out = {"design_files": list(self.design_files)} if self.design_files else {}
        return {**out,
                "machine": {"memory_map": [[s, e] for s, e in self.ram], "pdx": self.pdx},
                "hypervisor": {"version": self.version, "superpage": self.design,
                               "allow_superpage": self.allow_superpage,
                               "faithful": self.faithful,
                               **({} if self.pv_linear_pt else {"pv_linear_pt": False}),
                               **({"preempt": f"random {self.preempt:g}"} if self.preempt > 0
                                  else {})}}

    @classmethod
    def from_config(cls, cfg: Config, memmap: MemoryMap | None = None) -> "Setup":
        """The setup of a loaded config: its hypervisor, its PDX mode and the RAM ranges
        of its machine (``memmap``, else the map the config gives or names)."""
        mm = memmap if memmap is not None else build_memory_map(cfg)
        ram = tuple((r.start, r.end) for r in mm.ram_ranges)
        hv = cfg.hypervisor
        # a reproducer's calls carry their preemption points (each op's ``preempt``): any
        # hypervisor.preempt but never asks every check and answers from them
        p = parse_preemption(hv.preempt)
        preempt = (p.probability or 1.0) if p.mode == "random" else \
            1 / p.every if p.mode == "every" else 0.0 if p.mode == "never" else 1.0
        return cls(design=hv.superpage, version=hv.version, faithful=hv.faithful,
                   allow_superpage=hv.allow_superpage, pv_linear_pt=hv.pv_linear_pt,
                   ram=ram, pdx=cfg.machine.pdx,
                   design_files=tuple(cfg.design_files or ()), preempt=preempt)
