"""``xensim fuzz``: a bridge to the parser in ``xensim.fuzz._fuzz`` (replaced at the merge by
the module of the package's owner)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register ``xensim fuzz``."""
    from ..fuzz._fuzz import add_parser as add
    add(subparsers)
