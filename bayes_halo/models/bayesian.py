"""``BayesianModule``: put a prior on the prunable weights of any ``torch.nn.Module``.

One object, two estimators of the same objective:

* the **fast path** for a plain torch loop,
  ``objective(x, y) = mean_nll(net(x), y) + penalty()``, with the prior's hyper-variables
  (HALO's lambdas, all positive) held as ordinary trainable tensors ``raw`` and their
  positivity handled explicitly by ``positivity``:

  - ``"exp"``: ``lambda = exp(raw)``, Pyro's own coordinate (``biject_to(positive)``), so one
    SGD step here and one on ``AutoDelta`` move every parameter identically;
  - ``"abs"``: ``lambda = |raw|``, the paper's coordinate.  Same objective, different SGD
    trajectory: a dead weight's lambda falls linearly instead of ever more slowly, which in
    a fixed budget prunes better (see ``experiments/tune_defaults``);
* the **Pyro model** ``model(x, y)``: prunable weights and hyper-variables are sample sites of
  the prior, every other parameter has a flat (improper) prior, and ``y`` is observed inside
  ``pyro.plate("data", N, subsample=...)``, which scales the batch log-likelihood by ``N/B``.
  Hence ``-log p(y, theta, h) = N * objective + const`` and a MAP fit with ``AutoDelta`` +
  ``Trace_ELBO`` minimises the same function times ``N``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import biject_to, constraints

from ..errors import ConfigError
from ..groups import Grouping, build_groupings, check_groupings
from ..priors import GroupPrior, Prior, hyper_site_name
from .likelihoods import Categorical, Likelihood
from .selection import Scope, parameter_dict_key, prunable_layers, prunable_parameters, tensor_at

Positivity = Literal["exp", "abs"]


class BayesianModule(nn.Module):
    """A network ``net`` with ``prior`` on its prunable weights and ``likelihood`` on its outputs.

    Args:
        net: any module mapping a batch ``x`` to outputs.
        prior: the prior on every selected weight tensor, or ``None`` (maximum likelihood).
        n_data: ``N``, the number of training examples (sets the prior's total rates).
        likelihood: observation model (default: categorical on logits).
        scope, include_bias, exclude: which parameters get the prior
            (see :func:`bayes_halo.models.selection.prunable_parameters`).
        positivity: how trainable tensors map to the (positive) hyper-variables: ``"exp"``
            or ``"abs"`` (see the module docstring).
        groups: ``"weight"`` (per-weight sites, the default), a structure name of
            :mod:`bayes_halo.groups.structures` (``"unit"``, ``"out-unit"``, ``"bn-scale"``) built
            on the layers in scope, or a sequence of :class:`~bayes_halo.groups.Grouping`; with
            groupings the prior must be a group prior and its sites are the groupings.
        example_input: a batch ``net`` accepts, to trace its channel coupling (structures that need it).
    """

    def __init__(self, net: nn.Module, prior: Prior | None, n_data: int,
                 likelihood: Likelihood | None = None, scope: Scope = "all",
                 include_bias: bool = False, exclude: Iterable[str] = (), positivity: Positivity = "exp",
                 groups: str | Sequence[Grouping] = "weight", example_input: Tensor | None = None) -> None:
        super().__init__()
        if int(n_data) < 1:
            raise ConfigError(f"n_data must be a positive number of examples, got {n_data}")
        if positivity not in ("exp", "abs"):
            raise ConfigError(f"unknown positivity {positivity!r}; choose 'exp' or 'abs'")
        self.positivity = positivity
        self.net = net
        self.prior = prior
        self.n_data = int(n_data)
        self.likelihood = likelihood if likelihood is not None else Categorical()
        selected = prunable_parameters(net, scope, include_bias, exclude)
        #: names of the selected (prunable) tensors, with or without a prior
        self.prunable: tuple[str, ...] = tuple(selected)
        groupings = (build_groupings(groups, net, prunable_layers(net, scope, exclude), example_input)
                     if isinstance(groups, str) else list(groups))
        check_groupings(groupings, dict(net.named_parameters()))
        #: the groupings by site name (empty: per-weight sites)
        self.groupings: dict[str, Grouping] = {g.name: g for g in groupings}
        if prior is not None and isinstance(prior, GroupPrior) != bool(groupings):
            raise ConfigError(f"prior {prior.name!r} is a group prior: give it `groups`" if not groupings
                              else f"prior {prior.name!r} is per weight: `groups` needs a group prior")
        #: what carries the prior: grouping names with groups, else tensor (``named_parameters``) names
        self.sites: tuple[str, ...] = (tuple(self.groupings) or self.prunable) if prior is not None else ()
        self.hyper_raw = nn.ParameterDict()
        #: site -> {hyper key (e.g. ``"lambda"``): hyper-variable site name}
        self.hyper_names: dict[str, dict[str, str]] = {}
        #: hyper-variable site name -> its support (every one is ``constraints.positive``)
        self.hyper_support: dict[str, constraints.Constraint] = {}
        for site in self.sites:
            self.hyper_names[site] = {}
            for key, hyper in prior.hyper_sites(site, self.site_value(site).detach()).items():
                name = hyper_site_name(site, key)
                if hyper.constraint is not constraints.positive:
                    raise ConfigError(f"hyper-variable {name} is not positive; BayesianModule supports positive ones")
                self.hyper_names[site][key] = name
                self.hyper_support[name] = hyper.constraint
                self.hyper_raw[parameter_dict_key(name)] = nn.Parameter(self._unconstrain(hyper.init))

    # ----------------------------------------------------------------- fast path
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def weights(self) -> dict[str, Tensor]:
        """The selected (prunable) tensors, keyed by name."""
        return {name: tensor_at(self.net, name) for name in self.prunable}

    def site_value(self, site: str) -> Tensor:
        """What the prior sees at ``site``: a grouping's ``[G, d]`` matrix, or the tensor called ``site``."""
        grouping = self.groupings.get(site)
        if grouping is None:
            return tensor_at(self.net, site)
        return grouping.matrix({name: tensor_at(self.net, name) for name in grouping.tensor_names})

    def hyper(self, site: str) -> dict[str, Tensor]:
        """Constrained hyper-variables of ``site``, keyed by short name (e.g. ``"lambda"``)."""
        return {key: self._constrained(name) for key, name in self.hyper_names[site].items()}

    def hyper_values(self) -> dict[str, Tensor]:
        """Every constrained hyper-variable, keyed by its Pyro site name."""
        return {name: self._constrained(name) for name in self.hyper_support}

    def penalty(self) -> Tensor:
        """``R(w, h)``: the prior's per-example penalty summed over all sites (0 without a prior)."""
        total = next(self.net.parameters()).new_zeros(())
        for site in self.sites:
            total = total + self.prior.penalty(site, self.site_value(site), self.hyper(site), self.n_data)
        return total

    @torch.no_grad()
    def prior_gradients(self) -> list[tuple[Tensor, Tensor]]:
        """``(parameter, dR/dparameter)`` for every prior-carrying tensor and raw hyper-variable.

        From the closed forms (``penalty_grad``), no autograd, no host synchronisation: a site's
        value gives ``dR/dvalue``, which is the tensor's gradient (per-weight site) or is scattered
        into the member tensors (grouping); a hyper-variable's gradient is chained through the
        positivity coordinate (``abs``: ``dh/dr = sign(r)``; ``exp``: ``dh/dr = h``).
        """
        params = dict(self.net.named_parameters())
        out: list[tuple[Tensor, Tensor]] = []
        for site in self.sites:
            hyper = self.hyper(site)
            grad_value, grad_hyper = self.prior.penalty_grad(site, self.site_value(site), hyper, self.n_data)
            grouping = self.groupings.get(site)
            grads = grouping.scatter(grad_value) if grouping is not None else {site: grad_value}
            out += [(params[name], grad) for name, grad in grads.items()]
            for key, name in self.hyper_names[site].items():
                raw = self.hyper_raw[parameter_dict_key(name)]
                chain = raw.sign() if self.positivity == "abs" else hyper[key]
                out.append((raw, grad_hyper[key] * chain))
        return out

    def objective(self, x: Tensor, y: Tensor) -> Tensor:
        """The fast training objective ``mean_nll(net(x), y) + penalty()``."""
        return self.likelihood.mean_nll(self.net(x), y) + self.penalty()

    def network_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the network (one optimiser group)."""
        return self.net.parameters()

    def hyper_parameters(self) -> Iterator[nn.Parameter]:
        """Unconstrained hyper-variables (their own optimiser group)."""
        return iter(self.hyper_raw.values())

    # ----------------------------------------------------------------- Pyro path
    def model(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Pyro model ``p(y, theta, h)``; returns the network outputs for ``x``."""
        values: dict[str, Tensor] = {}
        for site in self.sites:
            grouping = self.groupings.get(site)
            if grouping is not None:
                values.update(grouping.scatter(self.prior.sample(site, self.site_value(site).detach(), self.n_data)))
        for name, param in self.net.named_parameters():
            if name in values:
                continue
            if name in self.sites:
                values[name] = self.prior.sample(name, param.detach(), self.n_data)
            else:
                flat = dist.ImproperUniform(constraints.real, (), param.shape)
                values[name] = pyro.sample(name, flat)
        out = torch.func.functional_call(self.net, values, (x,), strict=False)
        with pyro.plate("data", self.n_data, subsample=torch.arange(len(x), device=x.device)):
            self.likelihood.observe(out, y)
        return out

    def site_values(self) -> dict[str, Tensor]:
        """Current value of every latent site of :meth:`model` (to start a guide here)."""
        members = {name for site in self.sites if site in self.groupings for name in self.groupings[site].tensor_names}
        values = {name: p.detach().clone() for name, p in self.net.named_parameters() if name not in members}
        values.update({site: self.site_value(site).detach().clone() for site in self.sites if site in self.groupings})
        values.update({name: v.detach().clone() for name, v in self.hyper_values().items()})
        return values

    @torch.no_grad()
    def load_site_values(self, values: Mapping[str, Tensor]) -> None:
        """Set weights and hyper-variables from site values (e.g. a MAP or a posterior mean)."""
        params = dict(self.net.named_parameters())
        unknown = set(values) - set(params) - set(self.hyper_support) - set(self.groupings)
        if unknown:
            raise ConfigError(f"unknown site(s) {sorted(unknown)}")
        for name, value in values.items():
            if name in self.groupings:
                for member, tensor in self.groupings[name].scatter(value).items():
                    params[member].copy_(tensor)
            elif name in params:
                params[name].copy_(value)
            else:
                self.hyper_raw[parameter_dict_key(name)].copy_(self._unconstrain(value))

    # ----------------------------------------------------------------- helpers
    def _constrained(self, name: str) -> Tensor:
        raw = self.hyper_raw[parameter_dict_key(name)]
        return raw.abs() if self.positivity == "abs" else biject_to(constraints.positive)(raw)

    def _unconstrain(self, value: Tensor) -> Tensor:
        value = value.detach()
        return value.clone() if self.positivity == "abs" else biject_to(constraints.positive).inv(value)
