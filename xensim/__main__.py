"""``python -m xensim``: the command line (:func:`xensim.cli.main`)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:                     # Ctrl-C while the modules load
    print("xensim: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
