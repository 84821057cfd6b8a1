"""A user's designs: loading them from Python files and from installed packages, and
looking designs up by name (docs/designs/writing-a-design.md).

* :func:`load_design_file` imports one ``.py`` file as a module of its own and registers
  the :class:`SuperpageDesign` subclasses the file *defines* (not ones it imports) that
  have a ``name`` of their own, all or nothing; loading the same file again is a no-op.
  :func:`load_design_files` loads a list of them (a config's ``design_files:``, the
  CLI's ``--design-file``; a worker process loads its config's list the same way).
* The ``xensim.designs`` entry-point group: an installed package names a module (its
  designs, as for a file) or one class. They are loaded once, lazily, the first time a
  design name is looked up (:func:`design_names`, :func:`design_class`,
  :func:`make_design`, a config's validation).

Every failure is one :class:`ConfigError` line naming the file (or the entry point) and
the reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path

from .._errors import ConfigError
from ._host import SuperpageHost
from ._registry import REGISTRY, check_design
from ._superpage import SuperpageDesign

__all__ = ["ENTRY_POINT_GROUP", "load_design_file", "load_design_files", "load_entry_points",
           "design_names", "design_class", "make_design", "design_file_of"]

#: the entry-point group installed packages declare their designs in
ENTRY_POINT_GROUP = "xensim.designs"

#: resolved path of each design file loaded -> the names it registered
_FILES: dict[str, tuple[str, ...]] = {}
#: name of each design loaded from outside the package -> where from (a path, an entry point)
_ORIGIN: dict[str, str] = {}
#: the entry points: loaded yet, and the first broken one's error (raised at every look-up)
_ENTRY_POINTS: dict[str, object] = {"loaded": False, "error": None}


def _defined_designs(module: types.ModuleType) -> list[type]:
    """The designs ``module`` defines: SuperpageDesign subclasses of its own (not
    imported) with a ``name`` of their own (a class without one is a base to build on)."""
    return [v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, SuperpageDesign)
            and v.__module__ == module.__name__ and "name" in v.__dict__]


def _class_line(cls: type) -> int | None:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None


def _taken_by(name: str) -> str:
    cls = REGISTRY[name]
    if name in _ORIGIN:
        return f"design {cls.__name__} of {_ORIGIN[name]}"
    return f"the built-in design {cls.__name__}"


def _check_all(classes: list[type], fail: Callable[[str], None]) -> None:
    """Every class a valid design with a free name; ``fail(message, cls)`` raises."""
    seen: dict[str, type] = {}
    for cls in classes:
        problem = check_design(cls)
        if problem:
            fail(f"design class {cls.__name__}: {problem}", cls)
        if cls.name in seen:
            fail(f"design {cls.name!r} (class {cls.__name__}): the name is taken by class "
                 f"{seen[cls.name].__name__} of the same file", cls)
        if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
            fail(f"design {cls.name!r} (class {cls.__name__}): the name is taken by "
                 f"{_taken_by(cls.name)}", cls)
        seen[cls.name] = cls


def _module_name(path: Path) -> str:
    """A module name of the file's own: its stem and a digest of its resolved path."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"xensim_design_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"


def _raised_at(exc: BaseException, filename: str) -> int | None:
    """The line of ``filename`` the exception went through last (None: not there)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_design_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Import the Python file ``path`` and register the designs it defines; their names.

    All or nothing: a file that fails registers nothing and leaves no module behind.
    The same resolved file again is a no-op (the names it registered). ConfigError
    (``FILE[:LINE]: reason``): no such file, not a .py file, a syntax error, an
    exception while importing it, no design defined, a name already taken, a bad
    attribute (see check_design)."""
    shown = str(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(shown, None, "no such file")
    if p.is_dir():
        raise ConfigError(shown, None, "a directory, not a Python file")
    if p.suffix != ".py":
        raise ConfigError(shown, None, "not a Python file (a design file's name ends in .py)")
    resolved = p.resolve()
    key = str(resolved)
    if key in _FILES:
        return _FILES[key]
    load_entry_points()                        # their names are taken too
    name = _module_name(resolved)
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    before = dict(REGISTRY)
    sys.modules[name] = module                 # classes pickle by module name (workers)
    try:
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            if e.filename != key:
                raise
            raise ConfigError(shown, None, f"syntax error: {e.msg}", e.lineno) from None
        except (KeyboardInterrupt, ConfigError):
            raise
        except BaseException as e:             # noqa: BLE001 - the file's fault, one line
            raise ConfigError(shown, None, f"importing it raised {type(e).__name__}: {e}",
                              _raised_at(e, key)) from None
        finally:                               # a file that registered designs itself
            REGISTRY.clear()
            REGISTRY.update(before)
        classes = _defined_designs(module)
        if not classes:
            raise ConfigError(shown, None, "defines no design (a subclass of "
                                           "xensim.SuperpageDesign with a name of its own)")

        def fail(message: str, cls: type) -> None:
            raise ConfigError(shown, None, message, _class_line(cls))
        _check_all(classes, fail)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    for cls in classes:
        REGISTRY[cls.name] = cls
        _ORIGIN[cls.name] = key
    _FILES[key] = tuple(cls.name for cls in classes)
    return _FILES[key]


def load_design_files(paths: Iterable[str | os.PathLike]) -> tuple[str, ...]:
    """:func:`load_design_file` on each path in order; the names they registered. A
    process running a loaded Config elsewhere calls it with ``Config.design_files``."""
    names: list[str] = []
    for path in paths or ():
        names += load_design_file(path)
    return tuple(names)


def design_file_of(name: str) -> str | None:
    """The resolved path of the design file that registered design ``name`` (None: a
    built-in, an installed package's, or one registered directly)."""
    where = _ORIGIN.get(name)
    return where if where in _FILES else None


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> None:
    where = f"entry point {ep.name!r} ({ENTRY_POINT_GROUP}: {ep.value})"

    def fail(message: str, cls: type | None = None) -> None:
        raise ConfigError(None, None, f"{where}: {message}")
    try:
        obj = ep.load()
    except (KeyboardInterrupt, ConfigError):
        raise
    except BaseException as e:                 # noqa: BLE001 - the package's fault, one line
        fail(f"loading it raised {type(e).__name__}: {e}")
    if isinstance(obj, types.ModuleType):
        classes = _defined_designs(obj)
        if not classes:
            fail("its module defines no design (a subclass of xensim.SuperpageDesign with "
                 "a name of its own)")
    elif isinstance(obj, type) and issubclass(obj, SuperpageDesign):
        if "name" not in obj.__dict__:
            fail(f"class {obj.__name__} has no name of its own")
        classes = [obj]
    else:
        fail("names neither a module nor a subclass of xensim.SuperpageDesign")
    _check_all(classes, fail)
    for cls in classes:
        REGISTRY[cls.name] = cls
        _ORIGIN[cls.name] = where


def load_entry_points() -> None:
    """Register the designs of the installed packages' ``xensim.designs`` entry points,
    once. A broken one is a one-line ConfigError naming it, raised at this and every
    later call (the others are registered)."""
    if not _ENTRY_POINTS["loaded"]:
        _ENTRY_POINTS["loaded"] = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                _load_entry_point(ep)
            except ConfigError as e:
                if _ENTRY_POINTS["error"] is None:
                    _ENTRY_POINTS["error"] = e
    if _ENTRY_POINTS["error"] is not None:
        raise _ENTRY_POINTS["error"]


def design_names() -> tuple[str, ...]:
    """The registered designs' names, in registration order (entry points loaded first)."""
    load_entry_points()
    return tuple(REGISTRY)


def design_class(name: str) -> type[SuperpageDesign]:
    """The class of design ``name``; ValueError naming the choices if there is none."""
    load_entry_points()
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown superpage design {name!r}; choose from "
                         f"{', '.join(sorted(REGISTRY))}") from None


def make_design(name: str, host: SuperpageHost) -> SuperpageDesign:
    """A new instance of design ``name`` on ``host`` (a machine's ``design_host``)."""
    return design_class(name)(host)
