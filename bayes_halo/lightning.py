"""HALO inside ``lightning.Trainer.fit``: a callback that attaches the prior and applies its step.

    trainer = lightning.Trainer(callbacks=[HaloCallback(bayes_halo.HALO(xi=5e-5, psi=1e-4), n_data=60_000)])
    trainer.fit(lit_module, train_loader)     # training_step returns the likelihood's loss alone
    model = trainer.callbacks[0].model        # the BayesianModule: prune, export, hyper-variables

At ``setup`` the callback attaches the prior to the LightningModule's layers
(:func:`bayes_halo.attach`); at ``fit`` start it attaches every optimizer
(:mod:`bayes_halo.training.prior_step`: coupled for SGD, the adaptive default otherwise).
Lightning computes gradients inside ``optimizer.step(closure)``, so the "before" part of the prior
step runs from ``on_before_optimizer_step`` (after backward) and the proximal part after the step.
The hyper-variables travel in the callback's state (Lightning checkpoints).
Needs the optional extra: ``pip install bayes_halo[lightning]``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torchvision_cpu_compat

from .api import attach
from .config.choices import DEFAULT_POSITIVITY, Positivity
from .extras import require
from .models.bayesian import BayesianModule
from .models.selection import Layers
from .priors import Prior
from .training.prior_step import PriorStep

torchvision_cpu_compat.install()  # lightning imports torchmetrics, which imports torchvision
require("lightning.pytorch")  # one line naming the extra when Lightning is missing
import lightning.pytorch as pl  # noqa: E402


class HaloCallback(pl.Callback):
    """Put ``prior`` on the LightningModule's layers and apply it in every optimiser step (see the module docstring).

    Arguments as :func:`bayes_halo.attach` (``layers``, ``per_layer``, ``include_bias``,
    ``positivity``) and :meth:`BayesianModule.attach_optimizer` (``method``, ``hyper``, ``hyper_lr``).
    """

    def __init__(self, prior: Prior, n_data: int, *, layers: Layers = None, per_layer: Mapping[str, Prior] | None = None,
                 include_bias: bool = False, positivity: Positivity = DEFAULT_POSITIVITY, method: str = "auto",
                 hyper: str = "auto", hyper_lr: float | None = None) -> None:
        self.prior, self.n_data = prior, n_data
        self.attach_args = {"layers": layers, "per_layer": per_layer, "include_bias": include_bias,
                            "positivity": positivity}
        self.step_args = {"method": method, "hyper": hyper, "hyper_lr": hyper_lr}
        #: the LightningModule with its prior, from ``setup`` on
        self.model: BayesianModule | None = None
        self._steps: list[PriorStep] = []
        self._restored: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.model is None:
            self.model = attach(pl_module, self.prior, self.n_data, **self.attach_args)
        if self._restored is not None:
            self.model.hyper_raw.load_state_dict(self._restored)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.model.hyper_raw.to(pl_module.device)
        self._steps = [PriorStep(self.model, optimizer, before_hook=False, **self.step_args)
                       for optimizer in trainer.optimizers]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the torch one
        for step in self._steps:
            if step.optimizer is optimizer:
                step.before()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for step in self._steps:
            step.remove()
        self._steps = []

    def state_dict(self) -> dict[str, Any]:
        return {} if self.model is None else {k: v.detach().cpu() for k, v in self.model.hyper_raw.state_dict().items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) or None
        if self.model is not None and self._restored is not None:
            self.model.hyper_raw.load_state_dict(self._restored)
