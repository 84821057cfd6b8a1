"""The typed YAML loader: plain YAML data -> dataclasses, checked field by field.

Every file xensim reads goes through it: a schema *is* a set of dataclasses (a
config's in _schema.py, a memory-map file's in _files.py, an explorer scenario's in
_scenario.py, a reproducer's hypercalls in _hypercall_ops.py).  The loader walks
their fields and type hints (``int``, ``bool``,
``float``, ``str``, :data:`size`, ``Literal[...]``, ``X | None``, ``list[X]`` and
nested dataclasses), so a new section is added by writing a dataclass and a field
on ``Config``; nothing else changes.

Per-field extras go in ``dataclasses.field(metadata=...)``:

``choices``  a callable returning the allowed names (checked after loading);
``what``     how to call the value in that error (``unknown preset 'x'``);
``check``    a callable that raises ValueError(message) for a bad value;
``hint``     text appended to a bad-choice error;
``items``    for a ``list[X]`` field: the extras of each item (``{"choices": ...}``);
``yaml``     False for a field that is not read from YAML (``Config.source``);
``deprecated`` {old spelling: new} accepted for a ``Literal`` field, with one
             warning line on stderr naming the file, line and key path.

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
import re
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from .._errors import ConfigError
from ..mem import parse_size
from ._yamlsrc import KeyPath, YamlDoc, format_path

__all__ = ["Size", "size", "Loader", "load_dataclass", "describe", "line_of", "top_mapping"]


class Size:
    """Marker for ``Annotated[int, Size]``: a byte size parsed with ``parse_size``."""


#: An int given in YAML as a byte size: ``4096``, ``0x1000``, ``512MiB``, ``2GiB``.
size = Annotated[int, Size]


def describe(value: Any) -> str:
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


class Loader:
    """Converts plain YAML data to dataclasses, recording the line of every field."""

    def __init__(self, doc: YamlDoc | None, filename: str | None) -> None:
        self.doc = doc
        self.filename = filename
        self.key_lines: dict[str, int] = {}

    def line(self, src: KeyPath) -> int | None:
        return self.doc.line(src) if self.doc is not None else None

    def fail(self, path: KeyPath, src: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.filename, format_path(path) or None, message, self.line(src))

    def warn(self, path: KeyPath, src: KeyPath, message: str) -> None:
        """One ``xensim: warning: FILE:LINE: key.path: message`` line on stderr."""
        where = ConfigError(self.filename, format_path(path) or None, message, self.line(src))
        print(f"xensim: warning: {where}", file=sys.stderr)

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
                                           f"{describe(value)}")
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
                raise self.fail(path, src, f"expected a list, got {describe(value)}")
            (item_tp,) = get_args(tp) or (Any,)
            out = []
            for i, item in enumerate(value):
                self.note(path + (i,), src + (i,))
                out.append(self.convert(item, item_tp, path + (i,), src + (i,),
                                        meta.get("items")))
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
        raise self.fail(path, src, f"expected {_expected(tp)}, got {describe(value)}")

    def _choice(self, value: Any, choices: tuple, path: KeyPath, src: KeyPath,
                meta: dict) -> Any:
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        renamed = meta.get("deprecated", {})
        if isinstance(value, str) and value in renamed:
            self.warn(path, src, f"{value!r} is deprecated; write {renamed[value]!r}")
            return renamed[value]
        shown = describe(value)
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
                raise self.fail(path, src, f"unknown {what} {describe(value)}; "
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
            raise self.fail(path, src, f"expected {_expected(cls)}, got {describe(value)}")

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
    return Loader(doc, filename or doc.filename).load_dataclass(cls, data, root, root)


def line_of(path: str, key_lines: dict[str, int]) -> int | None:
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


def top_mapping(doc: YamlDoc, filename: str, what: str) -> dict:
    """The top level of a file, which must be a mapping (``what``: of what); {} if empty."""
    data = doc.data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(filename, None, f"the top level must be a mapping ({what}), "
                                          f"got {describe(data)}", doc.line(()))
    return data
