"""Mean-field Gaussian SVI in plain torch: the same estimator as Pyro's ``Trace_ELBO`` + ``AutoNormal``.

The family lives on the unconstrained latent sites ``u`` of a :class:`BayesianModule`: network
parameters as they are, hyper-variables through ``h = T(u) = biject_to(support)(u)`` (the transform
Pyro's autoguides and ``BayesianModule.hyper_raw`` use)::

    q(u) = prod_i Normal(u_i; m_i, s_i),   s_i = softplus(rho_i)   (AutoNormal's parametrisation).

Since ``-log p(y, theta, h) = N * mean_nll + N * R(w, h) + const`` (:mod:`bayes_halo.priors.base`)
and the density of ``u`` carries the Jacobian of ``T``, the negative ELBO at a reparameterised draw
``u = m + s * eps``, ``eps ~ Normal(0, I)``, on a batch of ``B`` examples is estimated by::

    L(u) = N * mean_nll(f(x_B; theta), y_B) + N * R(w, T(u_h)) + c - log|dT/du_h| - H[q],
    H[q] = sum_i (log s_i + log(2 pi e) / 2),

where ``c = -log p(w, h) - N * R(w, h)`` is the prior's normalising constant, found once from the
prior's Pyro fragment: ``L`` is then the full ``-ELBO``, on the same scale as Pyro's.

Pyro's estimator has ``log q(u) = -sum_i (log s_i + eps_i^2/2 + log(2 pi)/2)`` where this one has
``-H[q]``: they differ by ``sum_i (1 - eps_i^2)/2``, which has mean zero and no gradient with
respect to ``(m, rho)`` at fixed ``eps``; so the gradients are the same and the analytic entropy
only removes noise from the reported loss.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from pyro import poutine
from torch import Tensor, nn
from torch.distributions import Transform, biject_to, constraints

from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from ..models.selection import parameter_dict_key
from ..priors import hyper_site_name

_HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


class Marginal(NamedTuple):
    """One site's variational marginal: ``T(Normal(loc, scale))`` with ``T = transform``."""

    loc: Tensor
    scale: Tensor
    transform: Transform


def _entropy(scale: Tensor) -> Tensor:
    return scale.log().sum() + _HALF_LOG_2PI_E * scale.numel()


def _inverse_softplus(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


class MeanFieldGaussian(nn.Module):
    """``q(u)``, a diagonal Gaussian over every unconstrained latent site of ``module.model``.

    Starts at the module's current values (``loc = T^{-1}(value)``) with every scale ``init_scale``.
    The module itself is only read, never trained or changed.
    """

    def __init__(self, module: BayesianModule, init_scale: float = 1e-3) -> None:
        super().__init__()
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ConfigError(f"init_scale must be positive, got {init_scale}")
        self._module = (module,)  # a tuple keeps the module's parameters out of ours
        #: each hyper-variable site's transform ``T``
        self.transforms: dict[str, Transform] = {name: biject_to(support).with_cache(1)
                                                 for name, support in module.hyper_support.items()}
        values = module.site_values()
        #: the network's latent sites: its parameters, a grouping's matrix in place of its members
        self.network_sites = tuple(name for name in values if name not in self.transforms)
        self.prior_constant = _prior_constant(module)
        self.loc = nn.ParameterDict()
        self.rho = nn.ParameterDict()
        for name, value in values.items():
            unconstrained = self.transform(name).inv(value)
            self.loc[parameter_dict_key(name)] = nn.Parameter(unconstrained)
            self.rho[parameter_dict_key(name)] = nn.Parameter(_inverse_softplus(torch.full_like(unconstrained, init_scale)))

    @property
    def module(self) -> BayesianModule:
        return self._module[0]

    @property
    def site_names(self) -> tuple[str, ...]:
        """Every latent site: network parameters, then hyper-variables."""
        return self.network_sites + tuple(self.transforms)

    def transform(self, name: str) -> Transform:
        """``T`` of site ``name`` (identity for network parameters)."""
        return self.transforms.get(name, biject_to(constraints.real))

    def scale(self, name: str) -> Tensor:
        return F.softplus(self.rho[parameter_dict_key(name)])

    def marginals(self) -> dict[str, Marginal]:
        """``(loc, scale, T)`` of every site (unconstrained space; detached)."""
        return {name: Marginal(self.loc[parameter_dict_key(name)].detach(), self.scale(name).detach(), self.transform(name))
                for name in self.site_names}

    @torch.no_grad()
    def load_marginals(self, marginals: Mapping[str, tuple[Tensor, Tensor, Transform]]) -> None:
        """Set ``loc`` and ``scale`` of every site, e.g. from a Pyro ``AutoNormal``."""
        if set(marginals) != set(self.site_names):
            raise ConfigError(f"marginals name sites {sorted(marginals)}, the family has {sorted(self.site_names)}")
        for name, (loc, scale, _) in marginals.items():
            self.loc[parameter_dict_key(name)].copy_(loc)
            self.rho[parameter_dict_key(name)].copy_(_inverse_softplus(scale))

    def rsample(self, noise: Mapping[str, Tensor] | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """One reparameterised draw ``u = m + s * eps``: its constrained values, ``log|dT/du|``
        summed over hyper sites, and the entropy ``H[q] = sum_i (log s_i + log(2 pi e)/2)``.

        ``noise`` gives ``eps`` per site (common random numbers); by default it is drawn.
        """
        values: dict[str, Tensor] = {}
        log_det = entropy = 0.0
        for name in self.site_names:
            loc, scale = self.loc[parameter_dict_key(name)], self.scale(name)
            u = loc + scale * (torch.randn_like(loc) if noise is None else noise[name])
            entropy = entropy + _entropy(scale)
            if name in self.transforms:
                values[name] = self.transforms[name](u)
                log_det = log_det + self.transforms[name].log_abs_det_jacobian(u, values[name]).sum()
            else:
                values[name] = u
        return values, torch.as_tensor(log_det), entropy

    def neg_elbo(self, x: Tensor, y: Tensor, noise: Mapping[str, Tensor] | None = None) -> Tensor:
        """One-draw estimate of ``-ELBO`` on the batch ``(x, y)``."""
        module = self.module
        values, log_det, entropy = self.rsample(noise)
        params = module.network_values({name: values[name] for name in self.network_sites})
        out = torch.func.functional_call(module.net, params, (x,))
        n = module.n_data
        loss = n * module.likelihood.mean_nll(out, y)
        for site, hyper_names in module.hyper_names.items():
            hyper = {key: values[name] for key, name in hyper_names.items()}
            loss = loss + n * module.prior.penalty(site, values[site], hyper, n)
        return loss + self.prior_constant - log_det - entropy


@torch.no_grad()
def _prior_constant(module: BayesianModule) -> float:
    """``c = -log p(w, h) - N * R(w, h)`` summed over sites, at the module's current values.

    ``log p`` comes from the prior's own Pyro fragment conditioned on those values.
    """
    n = module.n_data
    total = 0.0
    for site in module.sites:
        weight, hyper = module.site_value(site), module.hyper(site)
        data = {site: weight, **{hyper_site_name(site, key): value for key, value in hyper.items()}}
        trace = poutine.trace(poutine.condition(module.prior.sample, data=data)).get_trace(site, weight, n)
        total += (-trace.log_prob_sum() - n * module.prior.penalty(site, weight, hyper, n)).item()
    return total
