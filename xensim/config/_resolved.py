"""The resolved config: a loaded config as plain data with every default filled in
and the memory map spelled out, and its YAML dump (``xensim run --out``'s
config.yaml), which loads back to the same run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from ..mem import MemoryMap
from ..output import write_atomic
from ._schema import MAP_SOURCES, Config

__all__ = ["to_data", "drop_none", "resolved_config", "dump_resolved"]


def to_data(obj: Any) -> Any:
    """A config dataclass as plain data (dicts, lists, scalars): its YAML fields only."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("yaml", True)}
    if isinstance(obj, (list, tuple)):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def resolved_config(cfg: Config, memmap: MemoryMap) -> dict:
    """The config as plain data, every default filled in and the memory map spelled out.

    The machine section names the map inline (``memory_map`` as hex ranges,
    ``name``, ``source``) so that loading it back gives the same map: loading
    the result of :func:`dump_resolved` and resolving again gives equal data.
    """
    data = to_data(cfg)
    mm = memmap.to_dict()
    rest = {k: v for k, v in data["machine"].items()
            if k not in MAP_SOURCES + ("name", "source")}
    data["machine"] = {"name": mm["name"], "source": mm["source"],
                       "memory_map": mm["ranges"], **rest}
    if not cfg.design_files:                # absolute paths once loaded: it re-runs anywhere
        data.pop("design_files")
    if data["hypervisor"]["pv_linear_pt"]:  # the default (on) left out: a config written
        data["hypervisor"].pop("pv_linear_pt")   # before the option resolves as it did
    if not cfg.simulates:                   # no simulation: its keys would mean nothing
        for key in _SIMULATION_KEYS:
            data.pop(key, None)
        return data
    data["workload"] = drop_none(to_data(cfg.effective_workload()))
    if cfg.compare is None:
        data.pop("compare")
    data["domains"] = [{"name": name, "memory": memory, **({"vcpus": n} if n > 1 else {})}
                       for (name, memory), n in zip(cfg.domain_specs(), cfg.domain_vcpus())]
    return data


#: the top-level keys of the simulation, written only when the config simulates
_SIMULATION_KEYS = ("workload", "compare", "domains", "seed", "cost_model", "audit_every")


def drop_none(data: Any) -> Any:
    """A workload as written: options its kind does not take (None) left out."""
    if isinstance(data, dict):
        return {k: drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [drop_none(x) for x in data]
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
