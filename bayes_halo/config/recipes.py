"""Named recipes: a published schedule as one flag (``--recipe paper-cifar``), every value overridable.

A recipe is a set of flat settings applied after the defaults and before a ``--config`` file and
the flags given, so ``config.json`` records the resolved values.  It fixes the schedule, the
data augmentation and what is penalised and pruned; the penalty strengths stay per method
(the reference's HALO command used ``xi = psi = 1e-8``: give them with ``--xi``/``--psi``).
"""
from __future__ import annotations

from typing import Any

#: recipe name -> flat settings (see :class:`~bayes_halo.config.sections.RunConfig`)
RECIPES: dict[str, dict[str, Any]] = {
    # reference-recipe.md, CIFAR: VGG-16-bn on CIFAR-10, 160 epochs, batch 64, SGD lr 0.1 momentum 0.9,
    # x0.1 at epochs 80 and 120, weight decay 1e-4 (and on HALO's lambdas, here a Gaussian factor in
    # the prior), random crop + flip, only convolution parameters penalised and conv weights pruned.
    "paper-cifar": {"dataset": "cifar10", "model": "vgg16-bn", "epochs": 160, "batch_size": 64, "lr": 0.1,
                    "momentum": 0.9, "lr_milestones": (0.5, 0.75), "lr_gamma": 0.1, "weight_decay": 1e-4,
                    "augment": True, "prune_scope": "conv", "include_bias": True, "keep": (0.3, 0.1, 0.05, 0.02)},
}
