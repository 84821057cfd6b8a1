"""``xensim inspect``: a bridge to the parser in ``xensim.teach._inspect`` (replaced at the merge by
the module of the package's owner)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register ``xensim inspect``."""
    from ..teach._inspect import add_parser as add
    add(subparsers)
