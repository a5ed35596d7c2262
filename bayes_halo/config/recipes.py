"""Named recipes: a published schedule as one flag (``--recipe paper-cifar``), every value overridable.

A recipe is a set of flat settings applied after the defaults and before a ``--config`` file and
the flags given, so ``config.json`` records the resolved values.  Settings that only some priors
take (HALO's ``lambda_decay``) are listed per prior and applied when the run's prior takes them
and they were not given.  The penalty strengths stay per method: the reference's HALO command
used ``xi = psi = 1e-8`` (give them with ``--xi``/``--psi``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """Flat settings for every run, and per prior name the settings only that prior takes."""

    description: str
    settings: dict[str, Any]
    by_prior: dict[str, dict[str, Any]] = field(default_factory=dict)


#: recipe name -> its settings (see :class:`~bayes_halo.config.sections.RunConfig`)
RECIPES: dict[str, Recipe] = {
    "paper-cifar": Recipe(
        "the paper's CIFAR recipe (Seto, Wells & Zhang 2021): VGG-16-bn on CIFAR-10, 160 epochs, batch 64, SGD lr 0.1 "
        "momentum 0.9, x0.1 at 50% and 75%, weight decay 1e-4 (and 1e-4 on HALO's lambdas, as a Gaussian factor in "
        "the prior), random crop + flip, only convolution weights and biases penalised, conv weights pruned",
        {"dataset": "cifar10", "model": "vgg16-bn", "epochs": 160, "batch_size": 64, "lr": 0.1, "momentum": 0.9,
         "lr_milestones": (0.5, 0.75), "lr_gamma": 0.1, "weight_decay": 1e-4, "augment": True,
         "prune_scope": "conv", "include_bias": True, "keep": (0.3, 0.1, 0.05, 0.02)},
        {"halo": {"lambda_decay": 1e-4}}),
}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown `recipe` {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
