"""``xensim explore``: a bridge to the parser in ``xensim.explore._scenario`` (replaced at the merge by
the module of the package's owner)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register ``xensim explore``."""
    from ..explore._scenario import add_parser as add
    add(subparsers)
