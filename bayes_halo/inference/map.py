"""MAP estimation through Pyro: an ``AutoDelta`` guide and ``Trace_ELBO`` on a BayesianModule.

``Trace_ELBO`` with a point-mass guide is ``-log p(y, theta, h)`` at the guide's values, taken in
the constrained space (no Jacobian), i.e. ``N * (mean_nll + penalty) + const``: the generic,
slow twin of the fast torch loop in :mod:`bayes_halo.training`.  Meant for small models
(linear and logistic regression, tiny networks); the result feeds SVI and ArviZ export.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value
from torch import Tensor

from ..errors import ConfigError, DivergenceError
from ..models.bayesian import BayesianModule


@dataclass
class MAPResult:
    """A MAP fit: the constrained value of every latent site and the loss per step."""

    values: dict[str, Tensor]
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """``-log p(y, theta, h) + const`` at the estimate (on the last batch)."""
        return self.losses[-1]


def map_guide(module: BayesianModule) -> AutoDelta:
    """An ``AutoDelta`` guide for ``module.model`` started at the module's current values."""
    return AutoDelta(module.model, init_loc_fn=init_to_value(values=module.site_values()))


def map_loss(module: BayesianModule, guide: AutoDelta, x: Tensor, y: Tensor) -> Tensor:
    """``Trace_ELBO`` loss of the point-mass guide: ``-log p(y, theta, h)`` up to a constant."""
    return Trace_ELBO().differentiable_loss(module.model, guide, x, y)


def fit_map(module: BayesianModule, x: Tensor, y: Tensor, steps: int = 2000, lr: float = 0.01,
            batch_size: int | None = None, seed: int = 0) -> MAPResult:
    """Fit the MAP of ``module``'s Pyro model by Adam on the ELBO, with cosine learning-rate decay.

    Full-batch by default; ``batch_size`` subsamples (the plate rescales by ``N/B``).  The module
    is updated in place to the estimate.  Raises DivergenceError on a non-finite loss.
    """
    if steps < 1 or lr <= 0:
        raise ConfigError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(seed)
        guide = map_guide(module)
        guide(x[:1], y[:1])
        optimizer = torch.optim.Adam(guide.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        for _ in range(steps):
            if batch_size is None or batch_size >= len(x):
                xb, yb = x, y
            else:
                idx = torch.randperm(len(x), generator=generator)[:batch_size]
                xb, yb = x[idx], y[idx]
            optimizer.zero_grad()
            loss = map_loss(module, guide, xb, yb)
            if not torch.isfinite(loss):
                raise DivergenceError(f"MAP loss became {loss.item()} at step {len(losses)}; lower lr")
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        values = {name: value.detach().clone() for name, value in guide.median().items()}
    module.load_site_values(values)
    return MAPResult(values=values, losses=losses)
