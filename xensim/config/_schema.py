"""The config schema: the dataclasses a config file is loaded into (machine,
hypervisor, domains, workload, compare, cost model), the checks of each, and the
checks across sections (:func:`check_simulation`).  docs/workloads.md describes
the simulation's keys; the loader (_loader.py) says how fields become YAML keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .._errors import ConfigError
from ..designs import default_design, design_names
from ..xen import LATEST_RELEASE, RELEASE_NAMES, Release, parse_preemption
from ._files import check_e820_type
from ._hypercall_ops import HypercallOp
from ._loader import line_of, size
from ._presets import DEFAULT_PRESET, list_presets

__all__ = [
    "RangeConfig", "MachineConfig", "HypervisorConfig", "DomainConfig", "MixConfig",
    "ScriptOpConfig", "WorkloadConfig", "CostModelConfig", "Config", "check_simulation",
    "workload_ops", "MAP_SOURCES", "WORKLOAD_KINDS", "GUEST_OPS", "PROCESS_OPS", "SLOT_RUN_OPS",
    "SUPERPAGE_RUN_OPS", "MAX_SLOTS", "SUPERPAGE_BYTES", "MAX_WORKLOAD_OPS",
    "FRAME_ATOMIC_NS", "CMPXCHG_NS", "HYPERCALL_NS", "version_field", "check_positive", "check_preempt",
    "check_not_negative",
]

#: the cost model's defaults (docs/cost-model.md; xensim.sim's CostModel prices with them)
FRAME_ATOMIC_NS = 4.8
CMPXCHG_NS = 5.6
HYPERCALL_NS = 0.0

#: the machine's three sources of a memory map (give one; none: DEFAULT_PRESET)
MAP_SOURCES = ("preset", "memory_map", "memory_map_file")


@dataclass
class RangeConfig:
    """One e820 range: ``{start:, end:, type:}`` or ``[start, end]`` / ``[start, end, type]``."""

    __yaml_sequence__ = ("start", "end", "type")

    start: size
    end: size
    type: str = field(default="ram", metadata={"check": check_e820_type})


@dataclass
class MachineConfig:
    """The host: its memory map (one of three sources) and PDX compression."""

    preset: str | None = field(default=None, metadata={"choices": list_presets,
                                                       "what": "preset"})
    memory_map: list[RangeConfig] | None = None
    memory_map_file: str | None = None
    pdx: Literal["none", "mask", "offset", "offset-4.21.0"] = "mask"
    name: str | None = None
    source: str | None = None

    def _after_load(self, fail: Callable[..., None]) -> None:
        given = [k for k in MAP_SOURCES if getattr(self, k) is not None]
        if len(given) > 1:
            fail(f"give only one of preset, memory_map, memory_map_file "
                 f"(got {' and '.join(given)})")
        if not given:
            self.preset = DEFAULT_PRESET


def check_preempt(value: str) -> None:
    """A ``hypervisor.preempt`` value: ``never``, ``every N``, ``random P [seed S]`` or
    ``at N [N ...]``."""
    parse_preemption(value)


def version_field() -> Any:
    """A ``version: Literal[RELEASE_NAMES]`` field: the Xen release, as written ("4.8")."""
    return field(default=str(LATEST_RELEASE),
                 metadata={"hint": "quote the version, e.g. \"4.8\": "
                                   "YAML reads 4.10 as the number 4.1"})


@dataclass
class HypervisorConfig:
    """Which Xen is simulated and which superpage design it uses."""

    version: Literal[RELEASE_NAMES] = version_field()
    allow_superpage: bool = True
    superpage: str = field(default_factory=default_design,
                           metadata={"choices": design_names, "what": "design"})
    faithful: bool = False
    #: when hypercall_preempt_check() answers true: never, every N, random P [seed S],
    #: at N [N ...] (the checks numbered N)
    preempt: str = field(default="never", metadata={"check": check_preempt})
    #: Xen's pv-linear-pt boot option (4.10 on; on by default, as in 4.22)
    pv_linear_pt: bool = True

    def _after_load(self, fail: Callable[..., None]) -> None:
        if not self.pv_linear_pt and Release.parse(self.version) < Release.R4_10:
            fail(f"Xen {self.version} has no pv-linear-pt option (it came with XSA-240's "
                 f"fix, 4.10): leave it out", "pv_linear_pt")
        if not self.allow_superpage and not Release.parse(self.version).pv_superpages:
            fail(f"Xen {self.version} has no allowsuperpage option (PV superpages were "
                 f"removed in 4.10): leave it out; 'none' is that Xen, a superpage design "
                 f"runs there as if merged", "allow_superpage")


# -- the simulation: domains, workload, compare, cost model (docs/workloads.md) --------

#: workload kinds, and the options each takes (the rest must be left out)
WORKLOAD_KINDS = ("map-all", "churn", "shared", "random", "script", "split-driver")
_WORKLOAD_OPTIONS = {
    "map-all": ("superpages", "writable", "rounds"),
    "churn": ("superpages", "writable", "iterations", "mark"),
    "shared": ("superpages", "writable", "rounds", "mappings"),
    "random": ("superpages", "steps", "slots", "small_slots", "mix"),
    "script": ("script", "ops"),
    "split-driver": ("superpages", "writable", "steps", "grants"),
}
#: a split-driver's grants in flight at most: the refs of the initial 4 grant frames
#: (2,048) less the 8 a Linux frontend reserves
MAX_GRANTS = 4 * 512 - 8
#: defaults of the options, filled in when a kind takes them (superpages: None = all)
_WORKLOAD_DEFAULTS = {
    "writable": True, "rounds": 1, "iterations": 100, "mark": False, "mappings": 8,
    "steps": 1000, "small_slots": 4, "grants": 64,
}
#: per-kind defaults (superpages: map-all and random use every superpage of each domain)
_KIND_DEFAULTS = {"churn": {"superpages": 1}, "shared": {"superpages": 4}}
#: guest operations (script entries, and what every workload generates)
GUEST_OPS = ("map", "unmap", "remap", "map-4k", "unmap-4k", "remap-4k", "mark", "unmark",
             "balloon-out", "balloon-in", "exec", "exit")
#: the operations only a script makes (a process's page tables pinned and unpinned: the
#: random mix does not pick them)
PROCESS_OPS = ("exec", "exit")
#: the arguments each guest operation takes (superpage and slot required where marked *)
_OP_ARGS = {
    "map": ("superpage*", "slot", "count", "writable"),
    "unmap": ("slot*", "count"),
    "remap": ("slot*", "count", "writable"),
    "map-4k": ("superpage*", "slot", "frame", "count", "writable"),
    "unmap-4k": ("slot*", "frame", "count"),
    "remap-4k": ("slot*", "frame", "count", "writable"),
    "mark": ("superpage*", "count"),
    "unmark": ("superpage*", "count"),
    "balloon-out": ("superpage*", "count"),
    "balloon-in": ("superpage*", "count"),
    "exec": ("superpage*", "count", "writable"),
    "exit": (),
}
#: operations whose ``count`` is a run of superpage slots / of superpages
SLOT_RUN_OPS = ("map", "unmap", "remap")
SUPERPAGE_RUN_OPS = ("map", "mark", "unmark", "balloon-out", "balloon-in", "exec")
#: 2 MiB virtual-address slots per region (superpage mappings; 4 KiB windows): 256 GiB each
MAX_SLOTS = 1 << 17
SUPERPAGE_BYTES = 2 << 20
#: operations a workload may have (per design; docs/workloads.md, "Limits"): a run
#: past it would take hours (the simulator runs ~1,000-10,000 operations a second)
MAX_WORKLOAD_OPS = 1_000_000


def check_positive(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")


#: the most vCPUs a domain of a config or scenario may have
MAX_VCPUS = 64


def check_vcpus(value: int) -> None:
    if not 1 <= value <= MAX_VCPUS:
        raise ValueError(f"a domain has 1 to {MAX_VCPUS} vCPUs, got {value}")


def check_not_negative(value) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _check_domain_memory(value: int) -> None:
    if value <= 0 or value % SUPERPAGE_BYTES:
        raise ValueError(f"a domain's memory must be a positive multiple of 2 MiB "
                         f"(superpage-backed), got {value:#x}")


@dataclass
class DomainConfig:
    """A guest: ``{name, memory, vcpus}``; ``count: N`` makes N of them, named NAME-1 ..
    NAME-N."""

    name: str = "guest"
    memory: size = field(default=64 << 20, metadata={"check": _check_domain_memory})
    count: int = field(default=1, metadata={"check": check_positive})
    #: its vCPUs (XEN_DOMCTL_max_vcpus); the workload's operations run on them in turn
    vcpus: int = field(default=1, metadata={"check": check_vcpus})


#: the random workload's default weights
_MIX_DEFAULTS = {"map": 4.0, "unmap": 3.0, "remap": 2.0, "map_4k": 1.0, "unmap_4k": 1.0,
                 "remap_4k": 0.5, "mark": 0.5, "unmark": 0.5, "balloon_out": 0.1,
                 "balloon_in": 0.1}
_WEIGHT = {"check": check_not_negative}


@dataclass
class MixConfig:
    """Relative weights of the ``random`` workload's operations. A mix that names
    some operations gives the others weight 0; an empty (or absent) one is the default."""

    map: float | None = field(default=None, metadata=_WEIGHT)
    unmap: float | None = field(default=None, metadata=_WEIGHT)
    remap: float | None = field(default=None, metadata=_WEIGHT)
    map_4k: float | None = field(default=None, metadata=_WEIGHT)
    unmap_4k: float | None = field(default=None, metadata=_WEIGHT)
    remap_4k: float | None = field(default=None, metadata=_WEIGHT)
    mark: float | None = field(default=None, metadata=_WEIGHT)
    unmark: float | None = field(default=None, metadata=_WEIGHT)
    balloon_out: float | None = field(default=None, metadata=_WEIGHT)
    balloon_in: float | None = field(default=None, metadata=_WEIGHT)

    @classmethod
    def default(cls) -> "MixConfig":
        return cls(**_MIX_DEFAULTS)

    def _after_load(self, fail: Callable[..., None]) -> None:
        given = {k: getattr(self, k) for k in _MIX_DEFAULTS if getattr(self, k) is not None}
        for k in _MIX_DEFAULTS:
            setattr(self, k, given.get(k, 0.0) if given else _MIX_DEFAULTS[k])
        if not any(getattr(self, k) for k in _MIX_DEFAULTS):
            fail("every weight is 0: give at least one operation a weight")


@dataclass
class ScriptOpConfig:
    """One guest operation of a ``script`` workload."""

    domain: str
    op: Literal[GUEST_OPS]
    superpage: int | None = field(default=None, metadata={"check": check_not_negative})
    slot: int | None = field(default=None, metadata={"check": check_not_negative})
    frame: int | None = field(default=None, metadata={"check": check_not_negative})
    count: int | None = field(default=None, metadata={"check": check_positive})
    writable: bool | None = None

    def _after_load(self, fail: Callable[..., None]) -> None:
        spec = _OP_ARGS[self.op]
        takes = [a.rstrip("*") for a in spec]
        for name in ("superpage", "slot", "frame", "count", "writable"):
            if getattr(self, name) is not None and name not in takes:
                fail(f"op {self.op} takes no '{name}' (it takes "
                     f"{', '.join(takes) or 'no argument'})", name)
        for a in spec:
            if a.endswith("*") and getattr(self, a[:-1]) is None:
                fail(f"op {self.op} needs '{a[:-1]}'")
        if "count" in takes and self.count is None:
            self.count = 1
        if "writable" in takes and self.writable is None:
            self.writable = True
        if "frame" in takes and self.frame is None:
            self.frame = 0
        if "slot" in takes and self.slot is None:
            self.slot = self.superpage if self.op == "map" else 0
        if self.frame is not None and self.frame + self.count > 512:
            fail(f"frames {self.frame}..{self.frame + self.count - 1} go past the "
                 f"superpage's 512", "count" if self.count > 1 else "frame")
        if self.slot is not None:
            last = self.slot + (self.count - 1 if self.op in SLOT_RUN_OPS else 0)
            if last >= MAX_SLOTS:
                fail(f"slots stop at {MAX_SLOTS - 1} (256 GiB of 2 MiB slots)", "slot")


@dataclass
class WorkloadConfig:
    """What the guests do (docs/workloads.md): a kind and the options it takes."""

    kind: Literal[WORKLOAD_KINDS]
    #: superpages of each domain the workload uses (from superpage 0); None: all of them
    superpages: int | None = field(default=None, metadata={"check": check_positive})
    writable: bool | None = None
    rounds: int | None = field(default=None, metadata={"check": check_positive})
    iterations: int | None = field(default=None, metadata={"check": check_positive})
    mark: bool | None = None
    mappings: int | None = field(default=None, metadata={"check": check_positive})
    steps: int | None = field(default=None, metadata={"check": check_positive})
    slots: int | None = field(default=None, metadata={"check": check_positive})
    small_slots: int | None = field(default=None, metadata={"check": check_not_negative})
    mix: MixConfig | None = None
    #: split-driver: grants in flight at most
    grants: int | None = field(default=None, metadata={"check": check_positive})
    script: list[ScriptOpConfig] | None = None
    #: raw hypercalls instead of guest operations (a fuzzer's reproducer; docs/fuzzing.md)
    ops: list[HypercallOp] | None = None

    def options(self) -> tuple[str, ...]:
        """The option names this kind takes."""
        return _WORKLOAD_OPTIONS[self.kind]

    def _after_load(self, fail: Callable[..., None]) -> None:
        takes = self.options()
        for f in dataclasses.fields(self):
            if f.name != "kind" and f.name not in takes and getattr(self, f.name) is not None:
                fail(f"'{f.name}' does not apply to a {self.kind} workload "
                     f"(it takes {', '.join(takes)})", f.name)
        defaults = {**_WORKLOAD_DEFAULTS, **_KIND_DEFAULTS.get(self.kind, {})}
        for name in takes:
            if getattr(self, name) is None and name in defaults:
                setattr(self, name, defaults[name])
        if self.kind == "random" and self.mix is None:
            self.mix = MixConfig.default()
        if self.kind == "script" and not self.script and self.ops is None:
            fail("a script workload needs a non-empty 'script' list of operations")
        if self.script and self.ops is not None:
            fail("give 'script' (guest operations) or 'ops' (hypercalls), not both", "ops")
        if self.slots is not None and self.slots > MAX_SLOTS:
            fail(f"at most {MAX_SLOTS} slots (256 GiB of 2 MiB slots)", "slots")
        if self.grants is not None and self.grants > MAX_GRANTS:
            fail(f"at most {MAX_GRANTS} grants in flight (the refs of 4 grant frames, "
                 f"8 reserved)", "grants")
        if self.small_slots is not None and self.small_slots > MAX_SLOTS:
            fail(f"at most {MAX_SLOTS} small slots (256 GiB of 2 MiB windows)", "small_slots")


@dataclass
class CostModelConfig:
    """Prices of the modelled time (docs/cost-model.md), in nanoseconds."""

    frame_atomic_ns: float = field(default=FRAME_ATOMIC_NS, metadata={"check": check_not_negative})
    cmpxchg_ns: float = field(default=CMPXCHG_NS, metadata={"check": check_not_negative})
    hypercall_ns: float = field(default=HYPERCALL_NS, metadata={"check": check_not_negative})


@dataclass
class Config:
    """A whole configuration file."""

    machine: MachineConfig = field(default_factory=MachineConfig)
    hypervisor: HypervisorConfig = field(default_factory=HypervisorConfig)
    #: The simulation (``xensim run`` runs it when there is a workload or a compare).
    workload: WorkloadConfig | None = None
    #: Run the same workload from the same seed on each of these designs.
    compare: list[str] | None = field(default=None, metadata={
        "items": {"choices": design_names, "what": "design"}})
    domains: list[DomainConfig] = field(default_factory=lambda: [DomainConfig()])
    seed: int = 0
    cost_model: CostModelConfig = field(default_factory=CostModelConfig)
    #: Run the auditor every N guest operations (0: only at the end of each design's run).
    audit_every: int = field(default=0, metadata={"check": check_not_negative})
    #: Python files of designs to load (xensim.designs.load_design_files) before the design
    #: names are checked; relative to the config's file, made absolute once loaded.
    design_files: list[str] | None = None
    #: The file it came from (not a YAML key).
    source: str | None = field(default=None, metadata={"yaml": False})
    #: Line of every key path loaded, by dotted path ("machine.memory_map[2].end").
    key_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False,
                                      metadata={"yaml": False})

    @property
    def simulates(self) -> bool:
        """Does ``xensim run`` run a simulation (a workload or a compare is given)?"""
        return self.workload is not None or self.compare is not None

    def domain_entries(self) -> list[tuple[int, str, int]]:
        """The guests as (index in ``domains``, name, memory bytes), ``count`` expanded,
        in creation order."""
        out = []
        for i, dc in enumerate(self.domains):
            names = [dc.name] if dc.count == 1 else [f"{dc.name}-{k}" for k in range(1, dc.count + 1)]
            out += [(i, name, dc.memory) for name in names]
        return out

    def domain_specs(self) -> list[tuple[str, int]]:
        """The guests as (name, memory bytes), in creation order."""
        return [(name, memory) for _, name, memory in self.domain_entries()]

    def domain_vcpus(self) -> list[int]:
        """Each guest's number of vCPUs, in creation order (as :meth:`domain_specs`)."""
        return [self.domains[i].vcpus for i, _, _ in self.domain_entries()]

    def effective_workload(self) -> WorkloadConfig:
        """The workload run: the configured one, else (a compare alone) map-all."""
        if self.workload is not None:
            return self.workload
        wl = WorkloadConfig(kind="map-all")
        wl._after_load(_raise_plain)
        return wl

    def designs(self) -> list[str]:
        """The designs a simulation runs: ``compare``, else the hypervisor's design."""
        return list(self.compare) if self.compare is not None else [self.hypervisor.superpage]


def _raise_plain(message: str, key: str | None = None) -> None:
    raise ConfigError(None, f"workload.{key}" if key else "workload", message)


def check_simulation(cfg: Config, filename: str | None = None,
                     key_lines: dict[str, int] | None = None) -> None:
    """Checks across sections: unique domain names, workloads naming existing domains
    and superpages, designs not repeated. Raises ConfigError at the key path."""
    lines = cfg.key_lines if key_lines is None else key_lines

    def fail(path: str, message: str) -> None:
        raise ConfigError(filename, path, message, line_of(path, lines))

    if cfg.compare is not None:
        if not cfg.compare:
            fail("compare", "an empty list: name at least one design")
        seen = set()
        for i, name in enumerate(cfg.compare):
            if name in seen:
                fail(f"compare[{i}]", f"design '{name}' is listed twice")
            seen.add(name)
    if not cfg.domains:
        fail("domains", "an empty list: a simulation needs at least one domain")
    memory: dict[str, int] = {}
    for i, name, mem in cfg.domain_entries():
        if name in memory:
            fail(f"domains[{i}].name", f"domain name '{name}' is used twice")
        memory[name] = mem
    wl = cfg.workload
    if wl is None:
        return
    smallest = min(memory.values()) // SUPERPAGE_BYTES
    if wl.superpages is not None and wl.superpages > smallest:
        fail("workload.superpages", f"{wl.superpages} superpages, but the smallest domain has "
                                    f"{smallest} (2 MiB each)")
    if wl.kind == "shared" and wl.superpages * wl.mappings > MAX_SLOTS:
        fail("workload.mappings", f"superpages x mappings must be at most {MAX_SLOTS}")
    ops, key = workload_ops(wl, [mem // SUPERPAGE_BYTES for mem in memory.values()])
    if ops > MAX_WORKLOAD_OPS:
        fail(f"workload.{key}", f"{ops:,} operations per design; the limit is "
                                f"{MAX_WORKLOAD_OPS:,} (docs/workloads.md, Limits)")
    for i, op in enumerate(wl.script or ()):
        at = f"workload.script[{i}]"
        if op.domain not in memory:
            fail(f"{at}.domain", f"no domain named '{op.domain}'; the domains are: "
                                 f"{', '.join(memory)}")
        if op.superpage is not None:
            have = memory[op.domain] // SUPERPAGE_BYTES
            last = op.superpage + (op.count - 1 if op.op in SUPERPAGE_RUN_OPS else 0)
            if last >= have:
                fail(f"{at}.superpage", f"domain '{op.domain}' has superpages 0..{have - 1}, "
                                        f"not {last}")


def workload_ops(wl: WorkloadConfig, superpages: list[int]) -> tuple[int, str]:
    """(operations the workload makes on domains of ``superpages`` superpages each, the
    option that multiplies them), counted without generating them."""
    used = [min(wl.superpages or n, n) for n in superpages]
    if wl.kind == "map-all":
        return wl.rounds * 2 * sum(-(-n // 512) for n in used), "rounds"
    if wl.kind == "churn":
        return (wl.iterations + (1 if wl.mark else 0)) * 2 * sum(used), "iterations"
    if wl.kind == "shared":
        return wl.rounds * 2 * wl.mappings * len(used), "rounds"
    if wl.kind == "random":
        return wl.steps, "steps"
    return len(wl.script or ()), "script"
