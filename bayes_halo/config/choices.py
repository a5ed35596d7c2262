"""Named choices shared by the settings and the code that implements them (no other imports).

Declared here, below the run settings, so that :mod:`bayes_halo.config.sections` and the
training code both read them and neither imports the other for a constant.
"""
from __future__ import annotations

from typing import Literal

#: the fast path's optimisers: "sgd" (SGD with momentum, the paper's) and "adamw"
OPTIMIZERS = ("sgd", "adamw")

#: "32": float32 throughout; "bf16": bfloat16 autocast for the network's forward pass only
PRECISIONS = ("32", "bf16")

#: how a trainable tensor ``r`` maps to a positive hyper-variable: ``|r|`` or ``exp(r)``
Positivity = Literal["abs", "exp"]
POSITIVITIES: tuple[Positivity, ...] = ("abs", "exp")
#: the one default, in the Python API and on the command line: the paper's coordinate, which
#: prunes better in a fixed budget (``experiments/tune_defaults``)
DEFAULT_POSITIVITY: Positivity = "abs"
