"""From run settings to a prior: default strengths per prior name, pilot-based priors, the builder.

The priors themselves (:mod:`bayes_halo.priors`) are mathematical objects that know nothing of
runs; each declares the names of the strengths its constructor takes (``Prior.strengths``).  What
a *run* needs on top lives here:

* :data:`DEFAULT_STRENGTHS`: per prior name, the per-example strengths a run uses when none are
  given.  They belong to the default schedule (LeNet-300-100, MNIST, 30 epochs, batch 100, SGD lr
  0.1 momentum 0.9, x0.1 at 50 % and 75 %): how far HALO's lambdas travel depends on ``psi``
  times the number of steps and the learning rate.  A prior of your own gets defaults with
  :func:`set_default_strengths` (without them its strengths must be given).
* :data:`PILOT_PRIORS`: priors built from the weights of a dense pilot fit (the adaptive lasso),
  by name, with the function that builds them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from ..errors import ConfigError
from ..priors import AdaptiveLaplace, GroupAdaptiveLaplace, Prior, prior_class

#: per-example default strengths by registered prior name (see the module docstring)
DEFAULT_STRENGTHS: dict[str, dict[str, float]] = {
    # not tuned: the conventional weight decay 5e-4 (ridge is no sparsity method)
    "ridge": {"xi": 5e-4},
    # the seed-0 scout of experiments/pruning_study (its choice at 2 % kept)
    "laplace": {"xi": 1e-4},
    "adaptive-laplace": {"xi": 1e-5},
    "shared-halo": {"xi": 3e-3, "psi": 1e-3},
    # xi, psi chosen on validation for the default schedule (experiments/tune_defaults, 3 seeds)
    "halo": {"xi": 5e-5, "psi": 1e-4, "lambda_decay": 0.0},
    # the validation scout of experiments/group_defaults (LeNet-300-100, unit groups, 5 epochs, seed 0)
    "group-laplace": {"xi": 3e-5},
    "group-adaptive-laplace": {"xi": 3e-5},
    "group-halo": {"xi": 2e-3, "psi": 1e-4, "size_power": 0.0},
}

#: ``strengths, pilot weights, gamma -> prior`` for the priors built from a dense pilot fit
PilotBuilder = Callable[[Mapping[str, float], Mapping[str, Tensor], float], Prior]
PILOT_PRIORS: dict[str, PilotBuilder] = {
    "adaptive-laplace": lambda strengths, pilot, gamma: AdaptiveLaplace.from_pilot(strengths["xi"], pilot, gamma=gamma),
    "group-adaptive-laplace": lambda strengths, pilot, gamma: GroupAdaptiveLaplace.from_pilot(
        strengths["xi"], pilot, gamma=gamma),
}


def set_default_strengths(name: str, **strengths: float) -> None:
    """Default strengths of the registered prior ``name`` (each one it declares), for runs and command lines."""
    cls = prior_class(name)
    declared = cls.strengths if cls is not None else ()
    unknown = sorted(set(strengths) - set(declared))
    if unknown:
        raise ConfigError(f"prior {name!r} takes no strength(s) {unknown}; it declares {list(declared)}")
    DEFAULT_STRENGTHS[name] = {k: float(v) for k, v in strengths.items()}


def default_strengths(name: str) -> dict[str, float]:
    """The default strengths of prior ``name`` (empty when it has none)."""
    return dict(DEFAULT_STRENGTHS.get(name, {}))


def needs_pilot(name: str) -> bool:
    """Whether prior ``name`` is built from a dense pilot fit."""
    return name in PILOT_PRIORS


def build_prior(name: str, strengths: Mapping[str, float], pilot: Mapping[str, Tensor] | None = None,
                gamma: float = 1.0) -> Prior | None:
    """The prior ``name`` with ``strengths`` (``None`` for ``"none"``); pilot-based ones from ``pilot``."""
    cls = prior_class(name)
    if cls is None:
        return None
    if needs_pilot(name):
        if pilot is None:
            raise ConfigError(f"the {name} prior needs pilot weights")
        return PILOT_PRIORS[name](strengths, pilot, gamma)
    return cls(**strengths)
