"""The command line: the parser and one module per subcommand."""

from ._main import main

__all__ = ["main"]
