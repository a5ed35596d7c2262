"""bayes_halo's one way to import torchvision (see the stand-alone :mod:`torchvision_cpu_compat`)."""
from __future__ import annotations

from types import ModuleType

import torchvision_cpu_compat


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, defining its missing operator schemas first if its extension cannot load."""
    torchvision_cpu_compat.install()
    import torchvision
    return torchvision
