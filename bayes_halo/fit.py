"""Entry point of ``python -m bayes_halo.fit`` (see :mod:`bayes_halo.cli.fit`)."""
import sys

from .cli.fit import main

if __name__ == "__main__":
    sys.exit(main())
