"""Gaussian prior: ridge regression / weight decay."""
from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
from torch import Tensor

from .base import Prior, check_strength


class Normal(Prior):
    r"""``w_j ~ Normal(0, s)`` with ``s = (N xi)^{-1/2}``; support: the real line.

    Penalty (per example): ``R(w) = xi/2 * sum_j w_j^2``, i.e. SGD weight decay ``xi``.
    """

    name = "ridge"
    strengths = ("xi",)

    def __init__(self, xi: float) -> None:
        self.xi = check_strength("xi", xi)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        return 0.5 * self.xi * weight.pow(2).sum()

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw = xi * w``."""
        return self.xi * weight, {}

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor:
        """``w / (1 + step * xi)``."""
        return weight / (1.0 + step * self.xi)

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        scale = like.new_tensor((n_data * self.xi) ** -0.5)
        return pyro.sample(site, dist.Normal(like.new_zeros(()), scale).expand(like.shape).to_event(like.dim()))
