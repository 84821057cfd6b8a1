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


def _probe(d: Path, option: str, what: str) -> None:
    """ConfigError unless a file can be created in the directory ``d`` (one is, and
    removed at once: the only sure test, whatever the user, the permissions and the
    file system)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".xensim-probe-", suffix=".tmp")
    except OSError as e:
        raise ConfigError(None, option, f"{what}: {_why(d / 'x', e)}") from None
    os.close(fd)
    os.unlink(tmp)


def check_dir(path: str | os.PathLike, option: str = "--out") -> None:
    """Before a run: ConfigError unless ``path`` is a directory that can be written, or
    one that can be created (its nearest existing ancestor is a directory that can be
    written). Nothing is created (:func:`out_dir` creates it)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(None, option, f"{path} is a file, not a directory")
    anc = _existing_ancestor(p)
    if not anc.is_dir():
        raise ConfigError(None, option, f"cannot create the directory {path}: {anc} is a "
                                        f"file, not a directory")
    _probe(anc, option, f"cannot write {path}" if anc == Path(os.path.abspath(p)) else
           f"cannot create the directory {path}")


def out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) -> the Path.
    ConfigError if it is a file, cannot be created or cannot be written, saying why."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(None, option, f"{path} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(None, option, f"cannot create the directory {path}: {_why(p, e)}") from None
    _probe(p, option, f"cannot write {path}")
    return p


def check_file(path: str | os.PathLike, option: str) -> None:
    """Before a run: ConfigError unless ``path`` (a file to write) could be written: it
    is not a directory, and its directory exists and can be written."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(None, option, f"{path} is a directory, not a file")
    parent = Path(os.path.abspath(p)).parent
    if not parent.is_dir():
        anc = _existing_ancestor(parent)
        why = (f"{anc} is a file, not a directory" if not anc.is_dir() else
               f"the directory {p.parent} does not exist")
        raise ConfigError(None, option, f"cannot write {path}: {why}")
    _probe(parent, option, f"cannot write {path}")


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
