"""Configuration: YAML files -> plain dataclasses, checked by one generic loader.

The schema *is* the dataclasses below.  The loader walks their fields and type
hints (``int``, ``bool``, ``float``, ``str``, :data:`size`, ``Literal[...]``,
``X | None``, ``list[X]`` and nested dataclasses), so a new section is added
by writing a dataclass and a field on :class:`Config`; nothing else changes.

Per-field extras go in ``dataclasses.field(metadata=...)``:

``choices``  a callable returning the allowed names (checked after loading);
``what``     how to call the value in that error (``unknown preset 'x'``);
``check``    a callable that raises ValueError(message) for a bad value;
``hint``     text appended to a bad-choice error;
``yaml``     False for a field that is not read from YAML (``Config.source``).

A dataclass may set ``__yaml_sequence__ = ("start", "end", "type")`` to also
accept a list, item *i* being the field named there (and reported under that
name: ``memory_map[2].end``), and may define ``_after_load(self, fail)`` for
checks across fields; ``fail(message, key=None)`` raises a ConfigError at the
section (or at ``key`` inside it).

Every error is a :class:`ConfigError` carrying the file, the key path
(``machine.memory_map[2].end``), the line and the reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin, \
    get_type_hints

import yaml

from .._errors import ConfigError
from ..output import write_atomic
from ..mem._memmap import E820Type, MemoryMap, MemoryMapError, MemRange, parse_boot_log, \
    parse_iomem, parse_memmap_text
from ._hypercall_ops import HypercallOp
from ._presets import list_presets, load_preset
from ..mem import parse_size
from ._yamlsrc import KeyPath, YamlDoc, format_path, load_yaml, read_text

__all__ = [
    "Size", "size", "DESIGNS",
    "RangeConfig", "MachineConfig", "HypervisorConfig", "Config", "MemmapFileConfig",
    "DomainConfig", "WorkloadConfig", "MixConfig", "ScriptOpConfig", "CostModelConfig",
    "WORKLOAD_KINDS", "GUEST_OPS", "check_simulation",
    "load_config", "parse_config", "default_config", "default_config_path",
    "build_memory_map", "load_memmap_file", "resolved_config", "dump_resolved",
    "load_dataclass",
]


class Size:
    """Marker for ``Annotated[int, Size]``: a byte size parsed with ``parse_size``."""


#: An int given in YAML as a byte size: ``4096``, ``0x1000``, ``512MiB``, ``2GiB``.
size = Annotated[int, Size]

#: The superpage reference-counting designs the simulator knows.
#: the cost model's defaults (docs/cost-model.md; xensim.sim's CostModel prices with them)
FRAME_ATOMIC_NS = 4.8
CMPXCHG_NS = 5.6
HYPERCALL_NS = 0.0

DESIGNS = ("per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch")

#: The preset used when a config names no memory map at all.
DEFAULT_PRESET = "teaching"

_MAP_SOURCES = ("preset", "memory_map", "memory_map_file")


def _check_e820_type(value: str) -> None:
    E820Type.parse(value)           # ValueError lists the accepted names


# --------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------

@dataclass
class RangeConfig:
    """One e820 range: ``{start:, end:, type:}`` or ``[start, end]`` / ``[start, end, type]``."""

    __yaml_sequence__ = ("start", "end", "type")

    start: size
    end: size
    type: str = field(default="ram", metadata={"check": _check_e820_type})


@dataclass
class MachineConfig:
    """The host: its memory map (one of three sources) and PDX compression."""

    preset: str | None = field(default=None, metadata={"choices": list_presets,
                                                       "what": "preset"})
    memory_map: list[RangeConfig] | None = None
    memory_map_file: str | None = None
    pdx: Literal["none", "mask", "offset"] = "mask"
    name: str | None = None
    source: str | None = None

    def _after_load(self, fail: Callable[..., None]) -> None:
        given = [k for k in _MAP_SOURCES if getattr(self, k) is not None]
        if len(given) > 1:
            fail(f"give only one of preset, memory_map, memory_map_file "
                 f"(got {' and '.join(given)})")
        if not given:
            self.preset = DEFAULT_PRESET


@dataclass
class HypervisorConfig:
    """Which Xen is simulated and which superpage design it uses."""

    version: Literal["4.1", "4.5", "4.7", "4.8"] = field(
        default="4.8", metadata={"hint": "quote the version, e.g. \"4.8\": "
                                         "YAML reads 4.10 as the number 4.1"})
    allow_superpage: bool = True
    superpage: str = field(default="xen-4.1", metadata={"choices": lambda: DESIGNS,
                                                        "what": "design"})
    faithful: bool = False


# -- the simulation: domains, workload, compare, cost model (docs/workloads.md) --------

#: workload kinds, and the options each takes (the rest must be left out)
WORKLOAD_KINDS = ("map-all", "churn", "shared", "random", "script")
_WORKLOAD_OPTIONS = {
    "map-all": ("superpages", "writable", "rounds"),
    "churn": ("superpages", "writable", "iterations", "mark"),
    "shared": ("superpages", "writable", "rounds", "mappings"),
    "random": ("superpages", "steps", "slots", "small_slots", "mix"),
    "script": ("script", "ops"),
}
#: defaults of the options, filled in when a kind takes them (superpages: None = all)
_WORKLOAD_DEFAULTS = {
    "writable": True, "rounds": 1, "iterations": 100, "mark": False, "mappings": 8,
    "steps": 1000, "small_slots": 4,
}
#: per-kind defaults (superpages: map-all and random use every superpage of each domain)
_KIND_DEFAULTS = {"churn": {"superpages": 1}, "shared": {"superpages": 4}}
#: guest operations (script entries, and what every workload generates)
GUEST_OPS = ("map", "unmap", "remap", "map-4k", "unmap-4k", "remap-4k", "mark", "unmark",
             "balloon-out", "balloon-in")
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
}
#: operations whose ``count`` is a run of superpage slots / of superpages
SLOT_RUN_OPS = ("map", "unmap", "remap")
SUPERPAGE_RUN_OPS = ("map", "mark", "unmark", "balloon-out", "balloon-in")
#: 2 MiB virtual-address slots per region (superpage mappings; 4 KiB windows): 256 GiB each
MAX_SLOTS = 1 << 17
SUPERPAGE_BYTES = 2 << 20
#: operations a workload may have (per design; docs/workloads.md, "Limits"): a run
#: past it would take hours (the simulator runs ~1,000-10,000 operations a second)
MAX_WORKLOAD_OPS = 1_000_000


def _check_positive(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")


def _check_not_negative(value) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _check_domain_memory(value: int) -> None:
    if value <= 0 or value % SUPERPAGE_BYTES:
        raise ValueError(f"a domain's memory must be a positive multiple of 2 MiB "
                         f"(superpage-backed), got {value:#x}")


@dataclass
class DomainConfig:
    """A guest: ``{name, memory}``; ``count: N`` makes N of them, named NAME-1 .. NAME-N."""

    name: str = "guest"
    memory: size = field(default=64 << 20, metadata={"check": _check_domain_memory})
    count: int = field(default=1, metadata={"check": _check_positive})


#: the random workload's default weights
_MIX_DEFAULTS = {"map": 4.0, "unmap": 3.0, "remap": 2.0, "map_4k": 1.0, "unmap_4k": 1.0,
                 "remap_4k": 0.5, "mark": 0.5, "unmark": 0.5, "balloon_out": 0.1,
                 "balloon_in": 0.1}
_WEIGHT = {"check": _check_not_negative}


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
    superpage: int | None = field(default=None, metadata={"check": _check_not_negative})
    slot: int | None = field(default=None, metadata={"check": _check_not_negative})
    frame: int | None = field(default=None, metadata={"check": _check_not_negative})
    count: int | None = field(default=None, metadata={"check": _check_positive})
    writable: bool | None = None

    def _after_load(self, fail: Callable[..., None]) -> None:
        spec = _OP_ARGS[self.op]
        takes = [a.rstrip("*") for a in spec]
        for name in ("superpage", "slot", "frame", "count", "writable"):
            if getattr(self, name) is not None and name not in takes:
                fail(f"op {self.op} takes no '{name}' (it takes {', '.join(takes)})", name)
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
    superpages: int | None = field(default=None, metadata={"check": _check_positive})
    writable: bool | None = None
    rounds: int | None = field(default=None, metadata={"check": _check_positive})
    iterations: int | None = field(default=None, metadata={"check": _check_positive})
    mark: bool | None = None
    mappings: int | None = field(default=None, metadata={"check": _check_positive})
    steps: int | None = field(default=None, metadata={"check": _check_positive})
    slots: int | None = field(default=None, metadata={"check": _check_positive})
    small_slots: int | None = field(default=None, metadata={"check": _check_not_negative})
    mix: MixConfig | None = None
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
        if self.small_slots is not None and self.small_slots > MAX_SLOTS:
            fail(f"at most {MAX_SLOTS} small slots (256 GiB of 2 MiB windows)", "small_slots")


@dataclass
class CostModelConfig:
    """Prices of the modelled time (docs/cost-model.md), in nanoseconds."""

    frame_atomic_ns: float = field(default=FRAME_ATOMIC_NS, metadata={"check": _check_not_negative})
    cmpxchg_ns: float = field(default=CMPXCHG_NS, metadata={"check": _check_not_negative})
    hypercall_ns: float = field(default=HYPERCALL_NS, metadata={"check": _check_not_negative})


@dataclass
class Config:
    """A whole configuration file."""

    machine: MachineConfig = field(default_factory=MachineConfig)
    hypervisor: HypervisorConfig = field(default_factory=HypervisorConfig)
    #: The simulation (``xensim run`` runs it when there is a workload or a compare).
    workload: WorkloadConfig | None = None
    #: Run the same workload from the same seed on each of these designs.
    compare: list[Literal[DESIGNS]] | None = None
    domains: list[DomainConfig] = field(default_factory=lambda: [DomainConfig()])
    seed: int = 0
    cost_model: CostModelConfig = field(default_factory=CostModelConfig)
    #: Run the auditor every N guest operations (0: only at the end of each design's run).
    audit_every: int = field(default=0, metadata={"check": _check_not_negative})
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


def _line_of(path: str, key_lines: dict[str, int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor with one."""
    probe = path
    while probe:
        if probe in key_lines:
            return key_lines[probe]
        shorter = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
        if shorter == probe:
            break
        probe = shorter
    return None


def check_simulation(cfg: Config, filename: str | None = None,
                     key_lines: dict[str, int] | None = None) -> None:
    """Checks across sections: unique domain names, workloads naming existing domains
    and superpages, designs not repeated. Raises ConfigError at the key path."""
    lines = cfg.key_lines if key_lines is None else key_lines

    def fail(path: str, message: str) -> None:
        raise ConfigError(filename, path, message, _line_of(path, lines))

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


@dataclass
class _RamRange:
    __yaml_sequence__ = ("start", "end")

    start: size
    end: size


@dataclass
class _TypedRange:
    __yaml_sequence__ = ("start", "end", "type")

    start: size
    end: size
    type: str = field(metadata={"check": _check_e820_type})


@dataclass(kw_only=True)
class MemmapFileConfig:
    """A YAML memory-map file (the presets' format): RAM, plus other ranges with a type."""

    name: str | None = None
    source: str | None = None
    ram: list[_RamRange]
    other: list[_TypedRange] = field(default_factory=list)


# --------------------------------------------------------------------------
# The generic loader
# --------------------------------------------------------------------------

def _describe(value: Any) -> str:
    """How a wrong value is shown in a message."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value})"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], len(rest) != len(args)
        raise TypeError(f"unsupported union type {tp!r} in a config dataclass")
    return tp, False


def _expected(tp: Any) -> str:
    tp, _ = _unwrap_optional(tp)
    origin = get_origin(tp)
    if origin is Annotated:
        return "a size" if Size in get_args(tp)[1:] else _expected(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(str(c) for c in get_args(tp))
    if origin is list:
        return "a list"
    if dataclasses.is_dataclass(tp):
        seq = getattr(tp, "__yaml_sequence__", None)
        return f"a mapping or a list [{', '.join(seq)}]" if seq else "a mapping"
    return {bool: "a boolean", int: "an integer", float: "a number",
            str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


class _Loader:
    """Converts plain YAML data to dataclasses, recording the line of every field."""

    def __init__(self, doc: YamlDoc | None, filename: str | None) -> None:
        self.doc = doc
        self.filename = filename
        self.key_lines: dict[str, int] = {}

    def line(self, src: KeyPath) -> int | None:
        return self.doc.line(src) if self.doc is not None else None

    def fail(self, path: KeyPath, src: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.filename, format_path(path) or None, message, self.line(src))

    def note(self, path: KeyPath, src: KeyPath) -> None:
        line = self.line(src)
        if line is not None:
            self.key_lines[format_path(path)] = line

    # -- values ---------------------------------------------------------------

    def convert(self, value: Any, tp: Any, path: KeyPath, src: KeyPath,
                meta: dict | None = None) -> Any:
        meta = meta or {}
        inner, optional = _unwrap_optional(tp)
        if value is None:
            if optional:
                return None
            if dataclasses.is_dataclass(inner):
                value = {}                      # "machine:" alone: all defaults
            else:
                raise self.fail(path, src, f"expected {_expected(inner)}, got "
                                           f"{_describe(value)}")
        result = self._convert(value, inner, path, src, meta)
        self._check(result, path, src, meta)
        return result

    def _convert(self, value: Any, tp: Any, path: KeyPath, src: KeyPath, meta: dict) -> Any:
        origin = get_origin(tp)
        if origin is Annotated:
            base, *extras = get_args(tp)
            if Size in extras:
                try:
                    return parse_size(value)
                except ValueError as exc:
                    raise self.fail(path, src, str(exc)) from None
            return self._convert(value, base, path, src, meta)
        if origin is Literal:
            return self._choice(value, get_args(tp), path, src, meta)
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(path, src, f"expected a list, got {_describe(value)}")
            (item_tp,) = get_args(tp) or (Any,)
            out = []
            for i, item in enumerate(value):
                self.note(path + (i,), src + (i,))
                out.append(self.convert(item, item_tp, path + (i,), src + (i,)))
            return out
        if dataclasses.is_dataclass(tp):
            return self.load_dataclass(tp, value, path, src)
        if tp is Any:
            return value
        if tp is bool:
            if isinstance(value, bool):
                return value
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif tp is str:
            if isinstance(value, str):
                return value
        else:
            raise TypeError(f"unsupported type {tp!r} in a config dataclass")
        raise self.fail(path, src, f"expected {_expected(tp)}, got {_describe(value)}")

    def _choice(self, value: Any, choices: tuple, path: KeyPath, src: KeyPath,
                meta: dict) -> Any:
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        shown = _describe(value)
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and all(isinstance(c, str) for c in choices)):
            # "version: 4.8" is a YAML float: take it as written.
            written = (self.doc.raw.get(src) if self.doc is not None else None) or str(value)
            if written in choices:
                return written
            shown = written
        message = (f"bad choice {shown}; choose from: "
                   f"{', '.join(str(c) for c in choices)}")
        if meta.get("hint"):
            message += f" ({meta['hint']})"
        raise self.fail(path, src, message)

    def _check(self, value: Any, path: KeyPath, src: KeyPath, meta: dict) -> None:
        if value is None:
            return
        if "choices" in meta:
            allowed = list(meta["choices"]())
            if value not in allowed:
                what = meta.get("what", "value")
                raise self.fail(path, src, f"unknown {what} {_describe(value)}; "
                                           f"choose from: {', '.join(allowed)}")
        if "check" in meta:
            try:
                meta["check"](value)
            except ValueError as exc:
                raise self.fail(path, src, str(exc)) from None

    # -- sections ---------------------------------------------------------------

    def load_dataclass(self, cls: type, value: Any, path: KeyPath, src: KeyPath) -> Any:
        fields = [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]
        names = [f.name for f in fields]
        seq = getattr(cls, "__yaml_sequence__", None)
        # Where each field's value came from in the YAML.
        srcs: dict[str, KeyPath] = {}
        if isinstance(value, list) and seq:
            n_req = sum(1 for f in fields if f.name in seq and _required(f))
            if not n_req <= len(value) <= len(seq):
                forms = [f"[{', '.join(seq[:n_req])}]"] if n_req < len(seq) else []
                forms.append(f"[{', '.join(seq)}]")
                raise self.fail(path, src, f"expected {' or '.join(forms)}, got "
                                           f"{len(value)} item{'s' * (len(value) != 1)}")
            items = dict(zip(seq, value))
            srcs = {name: src + (i,) for i, name in enumerate(seq)}
        elif isinstance(value, dict):
            items = {}
            for key, item in value.items():
                if not isinstance(key, str) or key not in names:
                    raise self.fail(path + (str(key),), src + (key,),
                                    _unknown_key(key, names))
                items[key] = item
                srcs[key] = src + (key,)
        else:
            raise self.fail(path, src, f"expected {_expected(cls)}, got {_describe(value)}")

        hints = _hints(cls)
        kwargs = {}
        for f in fields:
            if f.name not in items:
                if _required(f):
                    raise self.fail(path, src, f"missing required key '{f.name}'")
                if dataclasses.is_dataclass(hints[f.name]):
                    # An absent section is loaded as an empty one, so its checks run.
                    kwargs[f.name] = self.load_dataclass(hints[f.name], {}, path + (f.name,),
                                                         src)
                continue
            fsrc = srcs[f.name]
            self.note(path + (f.name,), fsrc)
            kwargs[f.name] = self.convert(items[f.name], hints[f.name], path + (f.name,),
                                          fsrc, dict(f.metadata))
        obj = cls(**kwargs)
        after = getattr(obj, "_after_load", None)
        if after is not None:
            def fail(message: str, key: str | None = None) -> None:
                sub = () if key is None else (key,)
                raise self.fail(path + sub, srcs.get(key, src) if key else src, message)
            after(fail)
        return obj


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    """A config dataclass's field types (cached: a 100,000-range map loads 100,000 ranges)."""
    return get_type_hints(cls, include_extras=True)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _unknown_key(key: Any, allowed: list[str]) -> str:
    message = f"unknown key {key!r}" if isinstance(key, str) else f"unknown key {key}"
    if isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
    return message + f"; allowed keys: {', '.join(allowed)}"


def load_dataclass(cls: type, doc: YamlDoc, filename: str | None = None,
                   root: KeyPath = ()) -> Any:
    """Load ``doc.data`` (or its part at ``root``) into dataclass ``cls``; for new modules."""
    data = doc.data
    for part in root:
        data = data[part]
    return _Loader(doc, filename or doc.filename).load_dataclass(cls, data, root, root)


# --------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------

def _top_mapping(doc: YamlDoc, filename: str, what: str) -> dict:
    data = doc.data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(filename, None, f"the top level must be a mapping ({what}), "
                                          f"got {_describe(data)}", doc.line(()))
    return data


def parse_config(text: str, filename: str = "<string>") -> Config:
    """Parse config text; ``filename`` is used in errors and to find a memory_map_file."""
    doc = load_yaml(text, filename)
    data = _top_mapping(doc, filename, "of sections such as machine: and hypervisor:")
    loader = _Loader(doc, filename)
    cfg = loader.load_dataclass(Config, data, (), ())
    cfg.source = filename
    cfg.key_lines = loader.key_lines
    check_simulation(cfg, filename)
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    """Load and check a config file. A file with no keys (empty, or only comments) is a
    ConfigError: a user who names a file means something by it."""
    text = read_text(path)
    if load_yaml(text, str(path)).data is None:
        raise ConfigError(str(path), None, "the config is empty (no keys): give at least one "
                          "section such as machine: or workload:; `xensim run` without a file "
                          "runs the default comparison")
    return parse_config(text, str(path))


def default_config_path() -> Path:
    """``configs/default.yaml`` of the source tree the package lives in."""
    return Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def default_config() -> Config:
    """The built-in default config (the teaching machine); plain defaults if the file is gone."""
    path = default_config_path()
    if path.is_file():
        return load_config(path)
    cfg = Config()
    cfg.machine.preset = DEFAULT_PRESET
    return cfg


# --------------------------------------------------------------------------
# Memory maps
# --------------------------------------------------------------------------

def _strip_prefix(message: str, filename: str | None, line: int | None) -> str:
    """Drop the 'FILE:LINE: ' / 'range #N: ' a MemoryMapError message may start with."""
    if filename:
        for prefix in ((f"{filename}:{line}: " if line is not None else None),
                       f"{filename}: "):
            if prefix and message.startswith(prefix):
                message = message[len(prefix):]
                break
    return re.sub(r"^range #\d+: ", "", message)


def _map_error(exc: MemoryMapError, filename: str | None, base: str,
               lists: list[tuple[str, int]], key_lines: dict[str, int],
               fallback_line: int | None) -> ConfigError:
    """A MemoryMapError about input range ``exc.index`` as a ConfigError on its key path.

    ``lists`` gives the key paths (relative to ``base``) of the input lists in
    the order their ranges were concatenated, with their lengths.  An error
    about no range in particular is put on the list if there is one, else on
    ``base``.
    """
    def name_of(index: int) -> str | None:
        rest = index
        for name, length in lists:
            if rest < length:
                return f"{name}[{rest}]"
            rest -= length
        return None

    def join(a: str, b: str) -> str:
        return f"{a}.{b}" if a and b else a or b

    path = join(base, lists[0][0]) if len(lists) == 1 else base
    if exc.index is not None and name_of(exc.index) is not None:
        path = join(base, name_of(exc.index))
        if exc.field:
            path += f".{exc.field}"
    message = _strip_prefix(exc.message, filename, None)
    if exc.index is not None:           # "ranges #0 ... and #3 ... overlap"
        message = re.sub(r"(?<![\w#])#(\d+)\b",
                         lambda m: name_of(int(m.group(1))) or m.group(0), message)

    line = _line_of(path, key_lines)
    if line is None:
        line = fallback_line
    return ConfigError(filename, path or None, message, line)


def load_memmap_file(path: str | os.PathLike) -> MemoryMap:
    """A MemoryMap from a file: the YAML memory-map format, a Linux boot log or /proc/iomem.

    A ``.yaml``/``.yml`` file, or any file that is YAML with a ``ram`` key, is
    read as ``{name, source, ram: [[start, end], ...], other: [[start, end, type], ...]}``;
    anything else goes to :func:`parse_memmap_text`.  Errors are ConfigErrors
    naming this file (and the key path and line when known).
    """
    filename = str(path)
    p = Path(path)
    text = read_text(p)
    doc: YamlDoc | None = None
    if p.suffix.lower() in (".yaml", ".yml"):
        doc = load_yaml(text, filename)
    else:
        try:
            candidate = load_yaml(text, filename)
        except ConfigError:
            candidate = None
        if candidate is not None and isinstance(candidate.data, dict) \
                and "ram" in candidate.data:
            doc = candidate
    if doc is not None:
        return _memmap_from_yaml(doc, filename, p)

    try:
        ranges = parse_memmap_text(text, filename)
    except MemoryMapError as exc:
        raise ConfigError(filename, None, _strip_prefix(exc.message, filename, exc.line),
                          exc.line) from None
    try:
        return MemoryMap(ranges, name=p.stem, source=filename)
    except MemoryMapError as exc:
        line = None
        if exc.index is not None and exc.index < len(ranges):
            line = _text_line_of(text, ranges[exc.index])
        message = re.sub(r"(?<![\w#])#\d+ ", "", _strip_prefix(exc.message, filename, None))
        raise ConfigError(filename, None, message, line) from None


def _text_line_of(text: str, rng: MemRange) -> int | None:
    """The first line of a boot log or /proc/iomem that gives range ``rng``."""
    parse = parse_boot_log if "BIOS-e820" in text else parse_iomem
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            if rng in parse(line):
                return lineno
        except MemoryMapError:
            continue
    return None


def _memmap_from_yaml(doc: YamlDoc, filename: str, p: Path) -> MemoryMap:
    data = _top_mapping(doc, filename, "with name, source, ram and other")
    loader = _Loader(doc, filename)
    mf = loader.load_dataclass(MemmapFileConfig, data, (), ())
    ranges = [(r.start, r.end, "ram") for r in mf.ram]
    ranges += [(r.start, r.end, r.type) for r in mf.other]
    try:
        return MemoryMap(ranges, name=mf.name or p.stem, source=mf.source or filename)
    except MemoryMapError as exc:
        raise _map_error(exc, filename, "", [("ram", len(mf.ram)), ("other", len(mf.other))],
                         loader.key_lines, doc.line(())) from None


def _base_dir(cfg: Config) -> Path:
    if cfg.source and not cfg.source.startswith("<"):
        return Path(cfg.source).parent
    return Path(".")


def build_memory_map(cfg: Config) -> MemoryMap:
    """Resolve the machine's preset, inline map or memory_map_file into a MemoryMap."""
    m = cfg.machine
    lines = cfg.key_lines
    if m.memory_map is not None:
        ranges = [(r.start, r.end, r.type) for r in m.memory_map]
        try:
            mm = MemoryMap(ranges, name=m.name or "custom", source=m.source)
        except MemoryMapError as exc:
            raise _map_error(exc, cfg.source, "machine", [("memory_map", len(ranges))],
                             lines, lines.get("machine")) from None
    elif m.memory_map_file is not None:
        file = Path(m.memory_map_file).expanduser()
        resolved = file if file.is_absolute() else _base_dir(cfg) / file
        if not resolved.exists():
            raise ConfigError(cfg.source, "machine.memory_map_file",
                              f"no such file: {resolved}", lines.get("machine.memory_map_file"))
        mm = load_memmap_file(resolved)
    else:
        try:
            mm = load_preset(m.preset or DEFAULT_PRESET)
        except ConfigError as exc:
            if exc.path != "machine.preset":
                raise
            raise ConfigError(cfg.source, exc.path, exc.message,
                              lines.get("machine.preset")) from None
    if m.name is not None:
        mm.name = m.name
    if m.source is not None:
        mm.source = m.source
    return mm


# --------------------------------------------------------------------------
# The resolved config
# --------------------------------------------------------------------------

def _to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("yaml", True)}
    if isinstance(obj, (list, tuple)):
        return [_to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_data(v) for k, v in obj.items()}
    return obj


def resolved_config(cfg: Config, memmap: MemoryMap) -> dict:
    """The config as plain data, every default filled in and the memory map spelled out.

    The machine section names the map inline (``memory_map`` as hex ranges,
    ``name``, ``source``) so that loading it back gives the same map: loading
    the result of :func:`dump_resolved` and resolving again gives equal data.
    """
    data = _to_data(cfg)
    mm = memmap.to_dict()
    rest = {k: v for k, v in data["machine"].items()
            if k not in _MAP_SOURCES + ("name", "source")}
    data["machine"] = {"name": mm["name"], "source": mm["source"],
                       "memory_map": mm["ranges"], **rest}
    if not cfg.simulates:                   # no simulation: its keys would mean nothing
        for key in _SIMULATION_KEYS:
            data.pop(key, None)
        return data
    data["workload"] = _drop_none(_to_data(cfg.effective_workload()))
    if cfg.compare is None:
        data.pop("compare")
    data["domains"] = [{"name": name, "memory": memory} for name, memory in cfg.domain_specs()]
    return data


#: the top-level keys of the simulation, written only when the config simulates
_SIMULATION_KEYS = ("workload", "compare", "domains", "seed", "cost_model", "audit_every")


def _drop_none(data: Any) -> Any:
    """A workload as written: options its kind does not take (None) left out."""
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_drop_none(x) for x in data]
    return data


class _ResolvedDumper(yaml.SafeDumper):
    """Block style, except lists of plain values (a range) on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(not isinstance(x, (list, tuple, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_ResolvedDumper.add_representer(list, _represent_list)


_RESOLVED_HEADER = """\
# The fully resolved xensim configuration of this run: every default filled in
# and the memory map spelled out as [start, end, type] byte ranges (half-open).
# Run it again with `xensim run config.yaml` to repeat the run on the same machine.
"""


def dump_resolved(cfg: Config, memmap: MemoryMap, path: str | os.PathLike) -> dict:
    """Write :func:`resolved_config` as YAML to ``path`` atomically; return the data."""
    data = resolved_config(cfg, memmap)
    text = _RESOLVED_HEADER + yaml.dump(data, Dumper=_ResolvedDumper, sort_keys=False,
                                        default_flow_style=False, allow_unicode=True,
                                        width=100)
    write_atomic(path, text)
    return data
