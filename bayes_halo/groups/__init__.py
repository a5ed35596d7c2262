"""Groups of weights that live or die together (units, channels, heads) and the structures that define them.

See :mod:`bayes_halo.groups.grouping` for :class:`Grouping` and :mod:`bayes_halo.groups.structures`
for the ``--groups`` structures (``weight``, ``unit``, ``out-unit``, ``bn-scale``).
"""
from __future__ import annotations

from .grouping import KINDS, Grouping, Slices, along, check_groupings
from .structures import (STRUCTURES, attention_heads, available_structures, build_groupings, mlp_units,
                         register_structure)

__all__ = ["KINDS", "Grouping", "Slices", "along", "check_groupings", "STRUCTURES", "attention_heads",
           "available_structures", "build_groupings", "mlp_units", "register_structure"]
