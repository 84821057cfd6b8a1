import sys

try:
    from .cli._main import main
except KeyboardInterrupt:                     # Ctrl-C while the modules load
    print("xensim: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
