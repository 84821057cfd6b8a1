"""Sweep files: the schema (``SweepFile``), loading one (``load_sweep``), the grid's
expansion into points, and each point's config, checked up front.

A sweep names a ``base`` config (a path relative to the sweep file, or the config's
keys inline; none: the built-in default), a ``grid`` of dotted config keys with lists
of values, and optionally ``compare`` and ``design_files`` (as in a config: they
replace the base's; the design files are loaded as a config loads them, here and by
each worker, from the resolved config's absolute paths). Every combination of the grid's values is a point, the last key
varying fastest. A point is an ordinary config: the base's YAML data with the grid's
values set at their keys, loaded by the one typed loader (``config_from_data``), so
it is checked as any config is. An error at a key the grid sets is reported at the
sweep file's grid entry (``sweep.yaml:5: grid.workload.iterations[1]: must be at
least 1, got 0``); any other error is the base's, with the point it arose in.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ..config import (Config, YamlDoc, build_memory_map, config_from_data, default_config_path,
                      describe, load_dataclass, load_yaml, read_text, top_mapping)
from ..mem import MemoryMap

__all__ = ["SweepFile", "Point", "Sweep", "load_sweep", "parse_sweep", "grid_cell",
           "describe_values"]


@dataclass
class SweepFile:
    """A sweep file's keys (``base`` and ``grid`` are checked by :func:`parse_sweep`)."""

    #: the base config: a path (relative to the sweep file) or a mapping of config keys
    base: Any = None
    #: dotted config keys -> lists of values
    grid: Any = None
    #: the designs each point runs (replaces the base's ``compare``)
    compare: list[str] | None = None
    #: files of user designs (relative to the sweep file), loaded before each point's
    #: config is checked, in this process and on every worker (replaces the base's)
    design_files: list[str] | None = None


@dataclass
class Point:
    """One combination of the grid's values: its config and memory map."""
    index: int
    #: grid key -> value, in the grid's order
    values: dict
    config: Config
    memmap: MemoryMap

    def describe(self) -> str:
        """``workload.iterations=20, seed=1``."""
        return describe_values(self.values)


@dataclass
class Sweep:
    """A loaded sweep: its file, grid keys and points (every config checked)."""
    source: str
    keys: list[str]
    points: list[Point]


def grid_cell(value: Any) -> Any:
    """A grid value as one cell: numbers and strings as they are, booleans as YAML writes
    them (true, false), lists and mappings as compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def describe_values(values: dict) -> str:
    """A point's grid values in one line: ``workload.iterations=20, seed=1``."""
    return ", ".join(f"{k}={grid_cell(v)}" for k, v in values.items())


def load_sweep(path: str | Path, compare: list[str] | None = None) -> Sweep:
    """Load and check a sweep file and every point's config (ConfigError: one line);
    ``compare``: the designs every point runs instead of the file's (``--compare``)."""
    text = read_text(path)
    return parse_sweep(text, str(path), compare)


def parse_sweep(text: str, filename: str = "<string>",
                compare: list[str] | None = None) -> Sweep:
    """Parse a sweep's text; a relative ``base`` is found beside ``filename``; ``compare``
    replaces the sweep's and the base's."""
    doc = load_yaml(text, filename)
    data = top_mapping(doc, filename, "of keys such as base: and grid:")
    if not data:
        raise ConfigError(filename, None, "the sweep is empty (no keys): give a base: config "
                                          "and a grid: of keys and values")
    sf = load_dataclass(SweepFile, doc, filename)
    base_doc, base_name, base_data = _base(sf, doc, filename)
    grid = _grid(sf, doc, filename)
    for key in ("compare", "design_files"):
        if getattr(sf, key) is not None:
            base_data[key] = data[key]
            _move_lines(doc, (key,), base_doc, (key,))
    if sf.design_files is not None:          # relative to the sweep file, not to the base
        here = Path(filename).parent
        base_data["design_files"] = [str(here / Path(f).expanduser()) for f in sf.design_files]
    if compare is not None:
        base_data["compare"] = list(compare)
    keys = list(grid)
    points = []
    maps: dict[str, MemoryMap] = {}
    overridden = {k for k in ("compare", "design_files") if getattr(sf, k) is not None}
    for index, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
        values = dict(zip(keys, combo))
        try:
            cfg, memmap = _point_config(base_doc, base_name, base_data, values, doc, filename,
                                        maps)
        except _PointError as pe:
            raise _blame(pe.error, filename, doc, values, pe.made, overridden) from None
        points.append(Point(index, values, cfg, memmap))
    return Sweep(filename, keys, points)


def _base(sf: SweepFile, doc: YamlDoc, filename: str) -> tuple[YamlDoc, str, dict]:
    """The base config: (its YamlDoc, the file name its errors give, its data)."""
    if sf.base is None:
        path = default_config_path()
        base_doc = load_yaml(read_text(path), str(path))
        return base_doc, str(path), dict(top_mapping(base_doc, str(path), "of sections"))
    if isinstance(sf.base, str):
        path = Path(sf.base).expanduser()
        if not path.is_absolute():
            path = Path(filename).parent / path
        if not path.is_file():
            raise ConfigError(filename, "base", f"no such config file: {path}", doc.line(("base",)))
        base_doc = load_yaml(read_text(path), str(path))
        data = top_mapping(base_doc, str(path), "of sections such as machine: and hypervisor:")
        return base_doc, str(path), dict(data)
    if isinstance(sf.base, dict):
        base_doc = YamlDoc(sf.base, filename)
        _move_lines(doc, ("base",), base_doc, ())
        return base_doc, filename, dict(sf.base)
    raise ConfigError(filename, "base", f"expected a config file's path or a mapping of config "
                                        f"keys, got {describe(sf.base)}", doc.line(("base",)))


def _grid(sf: SweepFile, doc: YamlDoc, filename: str) -> dict[str, list]:
    grid = sf.grid
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise ConfigError(filename, "grid", f"expected a mapping of dotted config keys to "
                                            f"lists of values, got {describe(grid)}",
                          doc.line(("grid",)))
    for key, values in grid.items():
        where = ("grid", key)
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigError(filename, f"grid.{key}", "a grid key is a dotted config key "
                                                       "such as workload.iterations",
                              doc.line(where))
        if not isinstance(values, list) or not values:
            raise ConfigError(filename, f"grid.{key}", f"expected a non-empty list of values, "
                                                       f"got {describe(values)}",
                              doc.line(where))
        seen: set[str] = set()
        for i, v in enumerate(values):
            canon = json.dumps(v, sort_keys=True, default=str)
            if canon in seen:
                raise ConfigError(filename, f"grid.{key}[{i}]", f"value {grid_cell(v)} is "
                                  f"listed twice", doc.line(where + (i,)))
            seen.add(canon)
    return grid


def _move_lines(src: YamlDoc, src_root: tuple, dst: YamlDoc, dst_root: tuple) -> None:
    """Copy the lines (and raw scalars) of ``src`` below ``src_root`` into ``dst``."""
    n = len(src_root)
    for table_src, table_dst in ((src.lines, dst.lines), (src.raw, dst.raw)):
        for path in [p for p in table_dst if p[:len(dst_root)] == dst_root]:
            del table_dst[path]
        for path, v in table_src.items():
            if path[:n] == src_root:
                table_dst[dst_root + path[n:]] = v


class _PointError(Exception):
    """A point's ConfigError, and the sections the grid created in it."""

    def __init__(self, error: ConfigError, made: set[str]):
        super().__init__(error, made)
        self.error, self.made = error, made


def _point_config(base_doc: YamlDoc, base_name: str, base_data: dict, values: dict,
                  doc: YamlDoc, filename: str,
                  maps: dict[str, MemoryMap]) -> tuple[Config, MemoryMap]:
    data = copy.deepcopy(base_data)
    point = YamlDoc(data, base_name, dict(base_doc.lines), dict(base_doc.raw))
    made: set[str] = set()                   # sections the grid created (absent in the base)
    for key, value in values.items():
        parts = tuple(key.split("."))
        node = data
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                node[part] = {}
                made.add(".".join(parts[:depth + 1]))
            node = node[part]
            if not isinstance(node, dict):
                raise _at_grid(filename, doc, key, values, None,
                               f"{'.'.join(parts[:depth + 1])} is not a section (a mapping) "
                               f"of the base config")
        node[parts[-1]] = copy.deepcopy(value)
        i = _value_index(doc, key, value)
        _move_lines(doc, ("grid", key, i), point, parts)
    try:
        cfg = config_from_data(point, base_name, data)
        if not cfg.simulates:
            raise ConfigError(base_name, None, "the base config runs no simulation: give it a "
                                               "workload: or a compare:")
        if cfg.workload is not None and cfg.workload.ops is not None:
            raise ConfigError(base_name, "workload.ops", "a fuzzer's reproducer (raw hypercalls) "
                                                         "is replayed by xensim run, not swept")
        machine = json.dumps([base_name, data.get("machine")], sort_keys=True, default=str)
        if machine not in maps:
            maps[machine] = build_memory_map(cfg)
        return cfg, maps[machine]
    except ConfigError as e:
        raise _PointError(e, made) from None


def _value_index(doc: YamlDoc, key: str, value: Any) -> int:
    canon = json.dumps(value, sort_keys=True, default=str)
    for i, v in enumerate(doc.data["grid"][key]):
        if json.dumps(v, sort_keys=True, default=str) == canon:
            return i
    return 0


def _blame(e: ConfigError, filename: str, doc: YamlDoc, values: dict, made: set[str],
           overridden: set[str]) -> ConfigError:
    """A point's error: at the grid entry that set the key, or at the sweep's compare or
    design_files, else the base's (naming the point)."""
    path = e.path or ""
    if e.message.startswith("unknown key") and path in values:
        return ConfigError(filename, f"grid.{path}", e.message, doc.line(("grid", path)))
    head = path.split("[")[0].split(".")[0]
    if head in overridden:
        return ConfigError(filename, path, e.message, doc.line(_key_path(path)))
    for key, value in values.items():
        if path == key or path.startswith((key + ".", key + "[")):
            return _at_grid(filename, doc, key, values, path[len(key):], e.message)
        if path in made and key.startswith(path + "."):
            return _at_grid(filename, doc, key, values, None,
                            f"the base config has no '{path}', and the one this key makes: "
                            f"{path}: {e.message}")
    return ConfigError(e.file, e.path, f"{e.message} (sweep point {describe_values(values)})"
                       if values
                       else e.message, e.line)


def _at_grid(filename: str, doc: YamlDoc, key: str, values: dict, rest: str | None,
             message: str) -> ConfigError:
    i = _value_index(doc, key, values[key])
    return ConfigError(filename, f"grid.{key}[{i}]{rest or ''}", message,
                       doc.line(("grid", key, i)))


def _key_path(path: str) -> tuple:
    """``compare[1]`` -> ``("compare", 1)``."""
    out: list = []
    for part in path.replace("]", "").split("."):
        name, *idx = part.split("[")
        out += [name] + [int(i) for i in idx]
    return tuple(out)
