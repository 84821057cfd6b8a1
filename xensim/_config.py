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
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin, \
    get_type_hints

import yaml

from ._errors import ConfigError
from ._results import write_atomic
from ._memmap import E820Type, MemoryMap, MemoryMapError, MemRange, parse_boot_log, \
    parse_iomem, parse_memmap_text
from ._presets import list_presets, load_preset
from ._units import parse_size
from ._yamlsrc import KeyPath, YamlDoc, format_path, load_yaml, read_text

__all__ = [
    "Size", "size", "DESIGNS",
    "RangeConfig", "MachineConfig", "HypervisorConfig", "Config", "MemmapFileConfig",
    "load_config", "parse_config", "default_config", "default_config_path",
    "build_memory_map", "load_memmap_file", "resolved_config", "dump_resolved",
    "load_dataclass",
]


class Size:
    """Marker for ``Annotated[int, Size]``: a byte size parsed with ``parse_size``."""


#: An int given in YAML as a byte size: ``4096``, ``0x1000``, ``512MiB``, ``2GiB``.
size = Annotated[int, Size]

#: The superpage reference-counting designs the simulator knows.
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


@dataclass
class Config:
    """A whole configuration file."""

    machine: MachineConfig = field(default_factory=MachineConfig)
    hypervisor: HypervisorConfig = field(default_factory=HypervisorConfig)
    #: The file it came from (not a YAML key).
    source: str | None = field(default=None, metadata={"yaml": False})
    #: Line of every key path loaded, by dotted path ("machine.memory_map[2].end").
    key_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False,
                                      metadata={"yaml": False})


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

        hints = get_type_hints(cls, include_extras=True)
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
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    """Load and check a config file."""
    return parse_config(read_text(path), str(path))


def default_config_path() -> Path:
    """``configs/default.yaml`` of the source tree the package lives in."""
    return Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


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

    line = None
    probe = path
    while probe:
        if probe in key_lines:
            line = key_lines[probe]
            break
        shorter = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
        if shorter == probe:
            break
        probe = shorter
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
