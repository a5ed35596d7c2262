"""Entry point of ``python -m bayes_halo.path`` (see :mod:`bayes_halo.cli.path`; the library is
:mod:`bayes_halo.regpath`)."""
import sys

from .cli.path import main

if __name__ == "__main__":
    sys.exit(main())
