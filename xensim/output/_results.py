"""Writing results to disk atomically: a crash or Ctrl-C never leaves half a file.

Write errors are the user's to fix (a path that cannot be written): :func:`out_dir`
and :func:`writing` turn them into one-line :class:`~xensim._errors.ConfigError`
naming the option, the user's path and why (the CLI's exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .._errors import ConfigError


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory.
    An OSError names ``path``, never the temporary file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _existing_ancestor(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _why(path: Path, e: OSError) -> str:
    """Why ``path`` could not be created, in words (the system's message in brackets)."""
    anc = _existing_ancestor(path.parent if path.exists() else path)
    if anc != Path(os.path.abspath(path)) and not anc.is_dir():
        return f"{anc} is a file, not a directory"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {anc}"
    if e.errno == errno.EROFS:
        return f"{anc} is on a read-only file system"
    if e.errno == errno.ENOSPC:
        return f"no space left on the device of {anc}"
    if e.errno == errno.ENOENT and anc.is_dir():
        return f"{anc} does not accept new files or directories ({e.strerror})"
    return e.strerror or str(e)


def out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) -> the Path.
    ConfigError if it is a file or cannot be created, saying why."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(None, option, f"{path} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(None, option, f"cannot create the directory {path}: {_why(p, e)}") from None
    return p


def check_file(path: str | os.PathLike, option: str) -> None:
    """Before a run: ConfigError if ``path`` (a file to write) is a directory or lies
    below a file (what can be told without writing)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(None, option, f"{path} is a directory, not a file")
    anc = _existing_ancestor(p.parent)
    if not anc.is_dir():
        raise ConfigError(None, option, f"cannot write {path}: {anc} is a file, not a directory")


@contextlib.contextmanager
def writing(path: str | os.PathLike, option: str):
    """Turn an OSError while writing ``path`` (the user's name for it) into a ConfigError."""
    try:
        yield
    except OSError as e:
        name = e.filename if e.filename else path
        p = Path(name)
        if p.is_dir():
            why = f"{name} is a directory, not a file"
        else:
            why = f"cannot write {name}: {_why(p, e)}"
        raise ConfigError(None, option, why) from None
