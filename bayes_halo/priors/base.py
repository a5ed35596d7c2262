"""The interface every prior implements, and the scaling convention, written down once.

Scaling convention
------------------
The paper adds a penalty ``R(w, h)`` to the *mean* loss over the N training examples:
``loss = mean_nll + R(w, h)``.  Multiplying by N gives a negative log joint::

    N * mean_nll + N * R(w, h) = -log p(y | w) - log p(w, h) + const.

So every strength a prior takes (``xi``, ``psi``, a ridge ``xi``) is **per example**, exactly the
coefficient the paper writes, and becomes a prior rate ``N * xi`` inside the Pyro model.  A
coefficient ``c_total`` on the summed loss is ``c_total / N`` here.  ``penalty`` returns
``R = (-log p(w, h) + const) / N``; the Pyro fragment ``sample`` draws from ``p(w, h)``.
The two agree up to an additive constant, which the tests check at random points in float64.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import math

import torch
from torch import Tensor
from torch.distributions import constraints

from ..errors import ConfigError


@dataclass(frozen=True)
class HyperSite:
    """A hyper-variable of a prior: its starting value (constrained space) and its support."""

    init: Tensor
    constraint: constraints.Constraint


def hyper_site_name(site: str, key: str) -> str:
    """Pyro site name of hyper-variable ``key`` belonging to weight site ``site``.

    ``"fc1.weight", "lambda" -> "fc1.weight_lambda"``: an underscore, not a dot, so Pyro's
    autoguides (which nest attributes on dots) keep the weight and its hyper-variable apart.
    """
    return f"{site}_{key}"


def check_strength(name: str, value: float, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise ConfigError if it is not a valid strength."""
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be a finite {bound} number, got {value}")
    return value


def soft_threshold(weight: Tensor, threshold: Tensor | float) -> Tensor:
    """``sign(w) max(|w| - t, 0)``: the proximal map of ``t |w|``, exact zeros where ``|w| <= t``."""
    return weight.sign() * (weight.abs() - threshold).clamp_(min=0.0)


def adaptive_weights(sizes: Mapping[str, Tensor], gamma: float, eps: float) -> dict[str, Tensor]:
    """Zou's adaptive weights ``omega = (s + eps)^-gamma`` of pilot sizes ``s`` (``|w_hat_j|`` or ``||w_hat_g||``), by site."""
    gamma = check_strength("gamma", gamma)
    eps = check_strength("eps", eps)
    return {site: (size.detach() + eps).pow(-gamma) for site, size in sizes.items()}


class Prior(ABC):
    """A prior ``p(w, h)`` on one weight tensor ``w`` and its hyper-variables ``h``.

    Subclasses implement three things that must describe the same density:
    ``hyper_sites`` (which hyper-variables exist, where they start, their support),
    ``penalty`` (plain torch, per example) and ``sample`` (a Pyro model fragment).
    A prior knows nothing of runs: default strengths and how settings become a prior live in
    :mod:`bayes_halo.config.priors`.
    """

    #: registry name (:func:`bayes_halo.priors.register_prior`)
    name: ClassVar[str]
    #: True when the joint MAP of (w, h) is degenerate (e.g. horseshoe at w = 0): SVI/NUTS only
    map_is_degenerate: ClassVar[bool] = False
    #: the names of the per-example strengths the constructor takes (``"xi"``, ``"psi"``, or any other)
    strengths: ClassVar[tuple[str, ...]] = ()
    #: hyper-variable carrying a learned lasso coefficient ``c = coefficient(h)``, or None
    coefficient_of: ClassVar[str | None] = None
    #: pruning-criterion name of that coefficient when it is per weight (keep the smallest ``c``), or None
    coefficient_criterion: ClassVar[str | None] = None

    def at(self, site: str) -> "Prior":
        """The prior acting on ``site``: ``self`` (a product of per-site priors returns that site's)."""
        return self

    def coefficient(self, value: Tensor) -> Tensor:
        """The learned lasso coefficient from hyper-variable ``coefficient_of`` (priors that have one)."""
        raise NotImplementedError(f"prior {self.name!r} has no learned coefficient")

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        """Hyper-variables of ``site``, keyed by short name (e.g. ``"lambda"``)."""
        return {}

    @abstractmethod
    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        """Per-example penalty ``R = (-log p(w, h) + const) / N`` as a scalar tensor.

        ``hyper`` holds the constrained values of ``hyper_sites``; for the paper's priors R
        does not depend on ``n_data``.
        """

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``(dR/dw, {key: dR/dh})`` at ``(weight, hyper)``, hyper-variables in constrained space.

        The fused optimiser (:mod:`bayes_halo.training.optim`) adds these inside its step instead
        of back-propagating through ``penalty``, and may overwrite the returned tensors (return
        fresh ones, never a view of an input).  Subclasses with a closed form override this;
        the default differentiates ``penalty`` with autograd.
        """
        with torch.enable_grad():
            inputs = [weight.detach().requires_grad_(True),
                      *(h.detach().requires_grad_(True) for h in hyper.values())]
            value = self.penalty(site, inputs[0], dict(zip(hyper, inputs[1:])), n_data)
            grads = torch.autograd.grad(value, inputs)
        return grads[0], dict(zip(hyper, grads[1:]))

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor | None:
        """``prox_{step R(., h)}(w) = argmin_v ||v - w||^2 / (2 step) + R(v, h)``, or None without a closed form.

        The proximal prior step for adaptive optimisers (:mod:`bayes_halo.training.prior_step`)
        uses it; a prior without one gets the decoupled gradient step ``w - step dR/dw``.
        """
        return None

    def profile(self, site: str, weight: Tensor) -> dict[str, Tensor] | None:
        """``argmin_h R(w, h)`` at fixed ``w`` (constrained values, keyed as ``hyper_sites``), or None.

        None when the prior has no hyper-variables or no closed form.  The proximal prior step
        may set the hyper-variables to it at every step instead of training them.
        """
        return None

    @abstractmethod
    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        """Pyro fragment: sample the hyper-variables, then ``w`` (shaped like ``like``) at ``site``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
