"""YAML loading that remembers where every key and list item was written.

``load_yaml(text, filename)`` returns a :class:`YamlDoc`: the plain Python
data (dicts, lists, scalars, as ``yaml.safe_load`` would give) plus, for every
key path, the 1-based line it appears on.  A key path is a tuple of mapping
keys and list indexes, e.g. ``("machine", "memory_map", 2, 1)``; the line of a
mapping entry is the line of its key, the line of a list item is where the
item starts.  What the path is *called* in messages (``memory_map[2].end``)
is the config layer's business; :func:`format_path` gives the plain form.

Everything a user can get wrong (syntax, duplicate keys, unknown tags,
unreadable or non-UTF-8 files) is raised as :class:`ConfigError`, never as a
yaml or OS exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .._errors import ConfigError

__all__ = ["KeyPath", "YamlDoc", "load_yaml", "read_text", "format_path"]

KeyPath = tuple[Union[str, int, Any], ...]

#: Values an alias may expand to, summed over every alias of a document (a value
#: written once counts once; one reached again through ``*alias`` counts each time):
#: stops "billion laughs" documents long before they eat the memory. A document
#: without aliases has no limit but its size (MAX_FILE_BYTES).
MAX_ALIAS_VALUES = 250_000
#: Files larger than this are refused unread (a config or a boot log is far smaller).
MAX_FILE_BYTES = 64 << 20

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class YamlDoc:
    """Loaded YAML: ``data`` plus where each key path was written."""

    data: Any
    filename: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    #: The text of plain (unquoted) scalars as written, e.g. "4.10" for a value
    #: YAML read as the float 4.1.
    raw: dict[KeyPath, str] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest recorded ancestor."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def format_path(path: KeyPath) -> str:
    """``("machine", "memory_map", 2, "end")`` -> ``"machine.memory_map[2].end"``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; every failure is a ConfigError naming the file."""
    name = str(path)
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(name, None, "no such file") from None
    except PermissionError:
        raise ConfigError(name, None, "permission denied") from None
    except OSError as exc:
        raise ConfigError(name, None, f"cannot read: {exc.strerror or exc}") from None
    if p.is_dir():
        raise ConfigError(name, None, "is a directory, not a file")
    if not p.is_file():
        raise ConfigError(name, None, "not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ConfigError(name, None, f"file too large ({st.st_size} bytes; "
                                      f"the limit is {MAX_FILE_BYTES} bytes)")
    try:
        data = p.read_bytes()
    except PermissionError:
        raise ConfigError(name, None, "permission denied") from None
    except OSError as exc:
        raise ConfigError(name, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(name, None, f"not UTF-8 text: cannot decode byte "
                                      f"0x{data[exc.start]:02x}", line) from None


def load_yaml(text: str, filename: str = "<string>") -> YamlDoc:
    """Parse one YAML document (safe tags only) and record the line of every key path.

    An empty document gives ``data=None``.  Raises ConfigError for a syntax
    error (with the line YAML reports), several documents, duplicate keys,
    unknown tags, non-scalar keys, recursive aliases and runaway documents.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:                                   # libyaml: ~4x faster on large memory maps
            return _load(text, filename, fast)
        except (ConfigError, yaml.YAMLError, RecursionError, ValueError, TypeError):
            pass                               # say what is wrong as the Python parser does
    return _load(text, filename, yaml.SafeLoader)


def _load(text: str, filename: str, loader_class) -> YamlDoc:
    doc = YamlDoc(None, filename)
    loader = None
    try:
        try:
            loader = loader_class(text)
            node = loader.get_single_node()
            if node is not None:
                doc.lines[()] = node.start_mark.line + 1
                doc.data = _Walker(loader, doc).walk(node, ())
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(exc, filename) from None
        except yaml.reader.ReaderError as exc:
            line = text[:max(exc.position, 0)].count("\n") + 1
            char = exc.character
            what = (f"character U+{char:04X}" if isinstance(char, int)
                    else f"character U+{ord(char):04X}" if isinstance(char, str) and char
                    else "byte")
            raise ConfigError(filename, None, f"invalid YAML: {what} is not allowed "
                                              f"({exc.reason})", line) from None
        except yaml.YAMLError as exc:
            raise ConfigError(filename, None, f"invalid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError(filename, None, "invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


def _syntax_error(exc: yaml.MarkedYAMLError, filename: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or exc.context or "syntax error"
    message = f"invalid YAML: {problem}"
    if exc.problem and exc.context:
        where = ""
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            where = f" on line {exc.context_mark.line + 1}"
        message += f" ({exc.context}{where})"
    return ConfigError(filename, None, message, line)


class _Walker:
    """Builds plain data from a composed node tree, recording lines on the way."""

    def __init__(self, loader: yaml.SafeLoader, doc: YamlDoc) -> None:
        self.loader = loader
        self.doc = doc
        self.seen: set[int] = set()       # ids of the nodes walked once
        self.expanded = 0                 # values walked again, through an alias
        self.active: set[int] = set()     # ids of the nodes being walked (alias loops)

    def fail(self, node: Node, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.doc.filename, format_path(path) or None, message,
                           node.start_mark.line + 1)

    def walk(self, node: Node, path: KeyPath) -> Any:
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_VALUES:
                raise self.fail(node, path, f"aliases expand to more than {MAX_ALIAS_VALUES} "
                                            f"values (a document of repeated aliases)")
        else:
            self.seen.add(id(node))
        if id(node) in self.active:
            raise self.fail(node, path, "recursive alias: a value that contains itself")
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise self.fail(node, path, f"unsupported YAML tag {node.tag!r}")
                out = []
                for i, item in enumerate(node.value):
                    self.doc.lines[path + (i,)] = item.start_mark.line + 1
                    out.append(self.walk(item, path + (i,)))
                return out
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            raise self.fail(node, path, f"unsupported YAML node {type(node).__name__}")
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: KeyPath, record: bool = True) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, TypeError, OverflowError, yaml.YAMLError) as exc:
            raise self.fail(node, path, f"bad {node.tag.rsplit(':', 1)[-1]} value "
                                        f"{node.value!r}: {exc}") from None
        if record and not node.style and path:   # plain: None (Python), '' (libyaml)
            self.doc.raw[path] = node.value
        return value

    def key(self, node: Node, path: KeyPath) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, path, "a mapping key must be a plain value, "
                                        "not a list or a mapping")
        key = self.scalar(node, path, record=False)
        try:
            hash(key)
        except TypeError:
            raise self.fail(node, path, f"unusable mapping key {node.value!r}") from None
        return key

    def mapping(self, node: MappingNode, path: KeyPath) -> dict:
        if node.tag != _MAP_TAG:
            raise self.fail(node, path, f"unsupported YAML tag {node.tag!r}")
        # Duplicates among the keys written here; merged (<<) keys may be overridden.
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(self.doc.filename, format_path(path + (key,)),
                                  f"duplicate key '{key}' (first given on line "
                                  f"{first_line[key]})", line)
            first_line[key] = line
        self.loader.flatten_mapping(node)      # resolves "<<: *anchor" merges
        out: dict = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            sub = path + (key,)
            self.doc.lines[sub] = key_node.start_mark.line + 1
            self.doc.raw.pop(sub, None)
            out[key] = self.walk(value_node, sub)
        return out
