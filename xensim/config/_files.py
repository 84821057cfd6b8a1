"""Memory-map files: xensim's YAML memory-map format (the presets' files), Linux
boot logs (``BIOS-e820:`` lines) and ``/proc/iomem`` dumps, loaded as a MemoryMap
with ConfigErrors naming the file, line and key path; and the translation of a
MemoryMapError about an input range into a ConfigError at that range's key path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigError
from ..mem import E820Type, MemoryMap, MemoryMapError, MemRange, parse_boot_log, parse_iomem, \
    parse_memmap_text
from ._loader import Loader, line_of, size, top_mapping
from ._yamlsrc import YamlDoc, load_yaml, read_text

__all__ = ["MemmapFileConfig", "load_memmap_file", "map_error", "check_e820_type"]


def check_e820_type(value: str) -> None:
    E820Type.parse(value)           # ValueError lists the accepted names


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
    type: str = field(metadata={"check": check_e820_type})


@dataclass(kw_only=True)
class MemmapFileConfig:
    """A YAML memory-map file (the presets' format): RAM, plus other ranges with a type."""

    name: str | None = None
    source: str | None = None
    ram: list[_RamRange]
    other: list[_TypedRange] = field(default_factory=list)


def _strip_prefix(message: str, filename: str | None, line: int | None) -> str:
    """Drop the 'FILE:LINE: ' / 'range #N: ' a MemoryMapError message may start with."""
    if filename:
        for prefix in ((f"{filename}:{line}: " if line is not None else None),
                       f"{filename}: "):
            if prefix and message.startswith(prefix):
                message = message[len(prefix):]
                break
    return re.sub(r"^range #\d+: ", "", message)


def map_error(exc: MemoryMapError, filename: str | None, base: str,
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

    line = line_of(path, key_lines)
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
    data = top_mapping(doc, filename, "with name, source, ram and other")
    loader = Loader(doc, filename)
    mf = loader.load_dataclass(MemmapFileConfig, data, (), ())
    ranges = [(r.start, r.end, "ram") for r in mf.ram]
    ranges += [(r.start, r.end, r.type) for r in mf.other]
    try:
        return MemoryMap(ranges, name=mf.name or p.stem, source=mf.source or filename)
    except MemoryMapError as exc:
        raise map_error(exc, filename, "", [("ram", len(mf.ram)), ("other", len(mf.other))],
                         loader.key_lines, doc.line(())) from None
