"""``python -m sharedstore``: the command line (see :mod:`sharedstore.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
