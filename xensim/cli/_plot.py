"""``xensim plot``: a bridge to the parser in ``xensim.output.plot._plot`` (replaced at the merge by
the module of the package's owner)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register ``xensim plot``."""
    from ..output.plot._plot import add_parser as add
    add(subparsers)
