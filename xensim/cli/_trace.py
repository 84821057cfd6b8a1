"""``xensim trace``: a bridge to the parser in ``xensim.teach._trace`` (replaced at the merge by
the module of the package's owner)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register ``xensim trace``."""
    from ..teach._trace import add_parser as add
    add(subparsers)
