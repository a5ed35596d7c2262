"""Entry point of ``python -m bayes_halo.export`` (see :mod:`bayes_halo.cli.export`)."""
import sys

from ..cli.export import main

if __name__ == "__main__":
    sys.exit(main())
