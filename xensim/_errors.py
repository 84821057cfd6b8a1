"""The error types every layer raises: a user's bad input (ConfigError, reported
without a traceback) and an impossible refcount transition (RefcountBug)."""

from __future__ import annotations

__all__ = ["ConfigError", "RefcountBug"]


class ConfigError(Exception):
    """A bad configuration or memory-map file.

    ``str(err)`` is one line, ``FILE:LINE: KEYPATH: MESSAGE``, with the parts
    that are None left out (``FILE: MESSAGE``, ``KEYPATH: MESSAGE`` ...).  A
    line without a file is shown as ``line N``.  The CLI prints it after
    ``xensim: error: `` and exits with status 2.
    """

    def __init__(self, file: str | None, path: str | None, message: str,
                 line: int | None = None) -> None:
        # args mirror the signature so the error pickles (multiprocessing).
        super().__init__(file, path, message, line)
        self.file = None if file is None else str(file)
        self.path = path or None
        self.message = str(message)
        self.line = line

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        # One line, whatever the message carries (YAML problems, file names).
        text = ": ".join(parts)
        return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")

    def __repr__(self) -> str:
        return (f"ConfigError(file={self.file!r}, path={self.path!r}, "
                f"message={self.message!r}, line={self.line!r})")


class RefcountBug(AssertionError):
    """An impossible transition (a count below zero): Xen would BUG() here."""
