"""Explorer scenario files (``scenarios/*.yaml``): their schema, loaded by the same
typed loader as configs (errors ``FILE:LINE: key.path: message``), and the loaded
:class:`Scenario` the explorer (xensim.explore) runs.

A scenario is a small machine, some guests, and a short list of guest operations
per CPU, run concurrently under the explorer::

    description: two CPUs map the same unmapped superpage
    design_files: [my_design.py] # designs to load first (relative to the scenario's file)
    design: xen-4.1              # --design overrides it
    hypervisor: {version: "4.8", faithful: false}
    memory: 64MiB                # a flat RAM machine [0, memory)
    domains:
      - {name: a, superpages: 2, vcpus: 1}
    setup:                       # run sequentially before the CPUs start
      - {op: map, domain: a, superpage: 1, table: 0}
    cpus:
      - [{op: map, domain: a, superpage: 0}]
      - [{op: map, domain: a, superpage: 0}]
    end: destroy                 # after each schedule: destroy every guest; all RAM free again
    hypercall_preemptions: 0     # at most N hypercall_preempt_check() answered pending

Operations (:data:`SCENARIO_OPS`): ``map`` / ``unmap`` / ``remap`` (a PSE entry;
``rw``, default true), ``map-4k`` / ``unmap-4k`` (``frame`` within the superpage;
the old spellings ``map4k`` / ``unmap4k`` are accepted with a warning), ``mark`` /
``unmark``, ``destroy``, ``map-grant`` / ``unmap-grant`` (``domain`` grants frame ``frame``
of its superpage to ``by``, which maps it with a host mapping, ``rw`` or read-only, at a
4 KiB address of its own; then unmaps it: each CPU's map uses a grant entry of its own,
as Xen's active-entry lock serialises one grant's pins). ``domain`` names whose superpage it is; ``by`` names the
domain issuing the hypercall (default: the same: ``by`` differing is how a scenario
makes a second domain touch another's superpage). Each CPU maps into page tables of
its own (``table``, default its CPU number + 1: table t covers 1 GiB of virtual
addresses at the direct map + t GiB), so entries never collide and only the
superpage's word and frames are shared.

A domain has ``vcpus`` vCPUs (default 1). An operation is issued by vCPU ``vcpu`` of
its issuing domain (default: the CPU's number modulo the domain's vCPUs, so CPUs 0 and 1
of a two-vCPU guest are its vCPUs 0 and 1); in a scenario with a domain of several vCPUs
no two CPUs may run one vCPU, and each CPU running one vCPU throughout is named by it
(``d1.v0``) in the explorer's trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._errors import ConfigError
from ..designs import default_design, design_names
from ..mem import SUPERPAGE_PAGES
from ..xen import RELEASE_NAMES, Release
from ._config import read_design_files
from ._loader import Loader, size, top_mapping
from ._schema import check_not_negative, check_positive, check_vcpus, version_field
from ._yamlsrc import KeyPath, YamlDoc, format_path, load_yaml, read_text

__all__ = ["SCENARIO_OPS", "TABLE_OPS", "BAD_ENTRY", "ScenarioOp", "ScenarioEntry",
           "ScenarioTable", "ScenarioFile", "Scenario", "load_scenario", "MAX_STEPS", "op_vcpu"]

#: the operations a scenario's setup and CPUs perform
SCENARIO_OPS = ("map", "unmap", "remap", "map-4k", "unmap-4k", "mark", "unmark", "destroy",
                "map-grant", "unmap-grant", "pin", "unpin", "set-entry", "decrease-reservation")
#: the operations on a scenario's ``page_tables`` (their ``pt``)
TABLE_OPS = ("pin", "unpin", "set-entry", "decrease-reservation")
#: a page-table entry's target that fails validation: a frame that is not RAM
BAD_ENTRY = "bad"
#: old spellings, accepted with a deprecation warning
_RENAMED_OPS = {"map4k": "map-4k", "unmap4k": "unmap-4k"}
#: the step bound of one schedule (a longer one is reported as a violation; a longer
#: ``--replay`` is refused)
MAX_STEPS = 200_000


def _check_index(value: int) -> None:
    if not 0 <= value < 512:
        raise ValueError(f"an entry of a page table: 0..511, got {value}")


def _check_level(value: int) -> None:
    if not 1 <= value <= 4:
        raise ValueError(f"a page-table level: 1..4, got {value}")


def _check_frame(value: int) -> None:
    if not 0 <= value < SUPERPAGE_PAGES:
        raise ValueError(f"a frame within the superpage: 0..{SUPERPAGE_PAGES - 1}, "
                         f"got {value}")


@dataclass
class ScenarioOp:
    """One guest operation of a scenario (the setup's, or one CPU's)."""

    op: Literal[SCENARIO_OPS] = field(metadata={"deprecated": _RENAMED_OPS})
    domain: str
    superpage: int = 0
    rw: bool = True
    table: int | None = field(default=None, metadata={"check": check_not_negative})
    frame: int = field(default=0, metadata={"check": _check_frame})
    by: str | None = None
    #: the issuing domain's vCPU (None: the CPU's number modulo its vCPUs)
    vcpu: int | None = field(default=None, metadata={"check": check_not_negative})
    #: ``pin``, ``unpin``, ``set-entry``: the page table (a ``page_tables`` name)
    pt: str | None = None
    #: ``set-entry``: the entry's index in ``pt``
    index: int = field(default=0, metadata={"check": _check_index})
    #: ``set-entry``: what the entry maps, a ``page_tables`` name or ``bad``; none clears it
    to: str | None = None


@dataclass
class ScenarioEntry:
    """A present entry of a scenario's page table: ``index`` maps table ``to`` (or
    ``bad``: a frame that is not RAM, refused by validation), writable unless ``rw``
    is false."""

    index: int = field(metadata={"check": _check_index})
    to: str
    rw: bool = True


@dataclass
class ScenarioTable:
    """A page table of the scenario: a frame of ``domain``'s own, its ``entries``
    written before the CPUs start (not validated: a pin or an entry to it does that)."""

    name: str
    domain: str
    level: int = field(metadata={"check": _check_level})
    entries: list[ScenarioEntry] = field(default_factory=list)


@dataclass
class ScenarioHypervisor:
    """The Xen release simulated, and whether its known bugs are reproduced."""

    version: Literal[RELEASE_NAMES] = version_field()
    faithful: bool = False


@dataclass
class ScenarioDomain:
    """A guest of ``superpages`` 2 MiB superpages (superpage-backed from 0)."""

    name: str
    superpages: int = field(default=1, metadata={"check": check_positive})
    vcpus: int = field(default=1, metadata={"check": check_vcpus})


@dataclass
class ScenarioFile:
    """A scenario file as written."""

    description: str = ""
    design: str = field(default_factory=default_design,
                        metadata={"choices": design_names, "what": "design"})
    hypervisor: ScenarioHypervisor = field(default_factory=ScenarioHypervisor)
    memory: size = 64 << 20
    domains: list[ScenarioDomain] = field(default_factory=list)
    page_tables: list[ScenarioTable] = field(default_factory=list)
    setup: list[ScenarioOp] = field(default_factory=list)
    cpus: list[list[ScenarioOp]] = field(default_factory=list)
    end: Literal["destroy", "none"] = "destroy"
    #: Python files of designs, loaded before ``design`` is checked (relative to the file)
    design_files: list[str] | None = None
    #: the explorer answers at most this many hypercall_preempt_check() pending per schedule
    hypercall_preemptions: int = field(default=0, metadata={"check": check_not_negative})
    #: the DFS's CPU preemption bound (None: the explorer's default, 2)
    preemption_bound: int | None = field(default=None, metadata={"check": check_not_negative})


@dataclass
class Scenario:
    """A loaded scenario, as the explorer runs it."""

    name: str
    description: str = ""
    design: str = field(default_factory=default_design)
    version: Release = Release.R4_8
    faithful: bool = False
    memory: int = 64 << 20
    #: (name, superpages), in creation order
    domains: list[tuple[str, int]] = field(default_factory=list)
    #: each domain's vCPUs, by name
    vcpus: dict[str, int] = field(default_factory=dict)
    #: the page tables the table operations name, in order (:class:`ScenarioTable`)
    page_tables: list = field(default_factory=list)
    setup: list[ScenarioOp] = field(default_factory=list)
    cpus: list[list[ScenarioOp]] = field(default_factory=list)
    end: str = "destroy"
    #: the file it was loaded from (named in errors)
    source: str | None = None
    #: the design files it loaded (absolute paths; a worker loads them again)
    design_files: list[str] | None = None
    #: at most this many hypercall_preempt_check() answered pending per schedule (0: no
    #: check is asked)
    hypercall_preemptions: int = 0
    #: the DFS's CPU preemption bound (None: the explorer's default, 2)
    preemption_bound: int | None = None


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Load and check a scenario file; every error is a ConfigError naming the file,
    line and key path."""
    filename = str(path)
    doc = load_yaml(read_text(path), filename)
    data = top_mapping(doc, filename, "of keys such as domains: and cpus:")
    loader = Loader(doc, filename)
    files = read_design_files(loader, data, filename)
    sf = loader.load_dataclass(ScenarioFile, data, (), ())
    _check(sf, doc, filename)
    return Scenario(name=Path(path).stem, description=sf.description, design=sf.design,
                    version=Release.parse(sf.hypervisor.version),
                    faithful=sf.hypervisor.faithful, memory=sf.memory,
                    domains=[(d.name, d.superpages) for d in sf.domains],
                    vcpus={d.name: d.vcpus for d in sf.domains}, page_tables=sf.page_tables,
                    setup=sf.setup,
                    cpus=sf.cpus, end=sf.end, source=filename, design_files=files,
                    hypercall_preemptions=sf.hypercall_preemptions,
                    preemption_bound=sf.preemption_bound)


def _check(sf: ScenarioFile, doc: YamlDoc, filename: str) -> None:
    """Checks across keys: domain names unique and named by each operation, superpages
    within their domain, at least one CPU."""
    def fail(path: KeyPath, message: str) -> None:
        raise ConfigError(filename, format_path(path), message, doc.line(path))

    superpages: dict[str, int] = {}
    for i, d in enumerate(sf.domains):
        if d.name in superpages:
            fail(("domains", i, "name"), f"domain name {d.name!r} is used twice")
        superpages[d.name] = d.superpages
    tables: dict[str, int] = {}
    for i, t in enumerate(sf.page_tables):
        if t.name in tables or t.name == BAD_ENTRY:
            fail(("page_tables", i, "name"), f"page table name {t.name!r} is "
                 + ("used twice" if t.name in tables else "reserved (an entry's bad target)"))
        if t.domain not in superpages:
            fail(("page_tables", i, "domain"), f"no domain named {t.domain!r}")
        tables[t.name] = i
    for i, t in enumerate(sf.page_tables):
        for j, e in enumerate(t.entries):
            if e.to != BAD_ENTRY and e.to not in tables:
                fail(("page_tables", i, "entries", j, "to"), f"no page table named {e.to!r} "
                     f"(nor {BAD_ENTRY!r})")
    lists = [(("setup",), sf.setup)] + [(("cpus", c), ops) for c, ops in enumerate(sf.cpus)]
    for at, ops in lists:
        for i, op in enumerate(ops):
            for who in ("domain", "by"):
                name = getattr(op, who)
                if name is not None and name not in superpages:
                    fail(at + (i, who), f"no domain named {name!r}")
            if op.op in TABLE_OPS:
                if op.pt not in tables:
                    fail(at + (i, "pt"), f"{op.op} needs pt: a page table of page_tables"
                         + (f", not {op.pt!r}" if op.pt is not None else ""))
                if op.to is not None and op.to != BAD_ENTRY and op.to not in tables:
                    fail(at + (i, "to"), f"no page table named {op.to!r} (nor {BAD_ENTRY!r})")
            have = superpages[op.domain]
            if not 0 <= op.superpage < have:
                fail(at + (i, "superpage"), f"domain {op.domain!r} has superpages "
                                            f"0..{have - 1}, not {op.superpage!r}")
    if not sf.cpus:
        fail(("cpus",), "a scenario needs at least one CPU")

    vcpus = {d.name: d.vcpus for d in sf.domains}
    for at, ops in lists:
        for i, op in enumerate(ops):
            n = vcpus[op.by or op.domain]
            if op.vcpu is not None and op.vcpu >= n:
                fail(at + (i, "vcpu"), f"domain {op.by or op.domain!r} has vCPUs 0..{n - 1}, "
                                       f"not {op.vcpu}")
    runs: dict[tuple[str, int], int] = {}
    for c, ops in enumerate(sf.cpus):
        for i, op in enumerate(ops):
            who = op_vcpu(op, c, vcpus)
            if vcpus[who[0]] > 1 and runs.setdefault(who, c) != c:
                fail(("cpus", c, i), f"vCPU {who[1]} of domain {who[0]!r} is run by CPU "
                                     f"{runs[who]} already: one vCPU runs on one CPU")


def op_vcpu(op: ScenarioOp, cpu: int, vcpus: dict[str, int]) -> tuple[str, int]:
    """(issuing domain, vCPU) of ``op`` run by CPU ``cpu`` (the setup's: -1, vCPU 0 by
    default)."""
    who = op.by or op.domain
    if op.vcpu is not None:
        return who, op.vcpu
    return who, max(cpu, 0) % vcpus.get(who, 1)
