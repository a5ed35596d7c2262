"""``BayesianModule``: put a prior on the prunable weights of any ``torch.nn.Module``.

One object, two estimators of the same objective:

* the **fast path** for a plain torch loop,
  ``objective(x, y) = mean_nll(net(x), y) + penalty()``, with the prior's hyper-variables
  (HALO's lambdas, all positive) held as ordinary trainable tensors ``raw`` and their
  positivity handled explicitly by ``positivity``:

  - ``"abs"`` (the default): ``lambda = |raw|``, the paper's coordinate.  A dead weight's lambda
    falls linearly instead of ever more slowly, which in a fixed budget prunes better (see
    ``experiments/tune_defaults``);
  - ``"exp"``: ``lambda = exp(raw)``, Pyro's own coordinate (``biject_to(positive)``), so one
    SGD step here and one on ``AutoDelta`` move every parameter identically.  Same objective,
    different SGD trajectory;
* the **Pyro model** ``model(x, y)``: prunable weights and hyper-variables are sample sites of
  the prior, every other parameter has a flat (improper) prior, and ``y`` is observed inside
  ``pyro.plate("data", N, subsample=...)``, which scales the batch log-likelihood by ``N/B``.
  Hence ``-log p(y, theta, h) = N * objective + const`` and a MAP fit with ``AutoDelta`` +
  ``Trace_ELBO`` minimises the same function times ``N``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import biject_to, constraints

from ..config.choices import DEFAULT_POSITIVITY, POSITIVITIES, Positivity
from ..errors import ConfigError
from ..priors import Prior, hyper_site_name
from .likelihoods import Categorical, Likelihood
from .selection import Scope, parameter_dict_key, prunable_parameters, tensor_at



class BayesianModule(nn.Module):
    """A network ``net`` with ``prior`` on its prunable weights and ``likelihood`` on its outputs.

    Args:
        net: any module mapping a batch ``x`` to outputs.
        prior: the prior on every selected weight tensor, or ``None`` (maximum likelihood).
        n_data: ``N``, the number of training examples (sets the prior's total rates).
        likelihood: observation model (default: categorical on logits).
        scope, include_bias, exclude: which parameters get the prior
            (see :func:`bayes_halo.models.selection.prunable_parameters`).
        positivity: how trainable tensors map to the (positive) hyper-variables: ``"abs"``
            (the default, as on the command line) or ``"exp"`` (see the module docstring).
    """

    def __init__(self, net: nn.Module, prior: Prior | None, n_data: int,
                 likelihood: Likelihood | None = None, scope: Scope = "all",
                 include_bias: bool = False, exclude: Iterable[str] = (), positivity: Positivity = DEFAULT_POSITIVITY) -> None:
        super().__init__()
        if int(n_data) < 1:
            raise ConfigError(f"n_data must be a positive number of examples, got {n_data}")
        if positivity not in POSITIVITIES:
            raise ConfigError(f"unknown positivity {positivity!r}; choose one of {', '.join(POSITIVITIES)}")
        self.positivity = positivity
        self.net = net
        self.prior = prior
        self.n_data = int(n_data)
        self.likelihood = likelihood if likelihood is not None else Categorical()
        selected = prunable_parameters(net, scope, include_bias, exclude)
        #: names of the selected (prunable) tensors, with or without a prior
        self.prunable: tuple[str, ...] = tuple(selected)
        #: names of the tensors that carry the prior (``named_parameters`` names)
        self.sites: tuple[str, ...] = self.prunable if prior is not None else ()
        self.hyper_raw = nn.ParameterDict()
        #: site -> {hyper key (e.g. ``"lambda"``): hyper-variable site name}
        self.hyper_names: dict[str, dict[str, str]] = {}
        #: hyper-variable site name -> its support (every one is ``constraints.positive``)
        self.hyper_support: dict[str, constraints.Constraint] = {}
        for site in self.sites:
            weight = selected[site]
            self.hyper_names[site] = {}
            for key, hyper in prior.hyper_sites(site, weight.detach()).items():
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
        """The selected (prunable) tensors, keyed by name; with a prior, the tensors that carry it."""
        return {name: tensor_at(self.net, name) for name in self.prunable}

    def hyper(self, site: str) -> dict[str, Tensor]:
        """Constrained hyper-variables of ``site``, keyed by short name (e.g. ``"lambda"``)."""
        return {key: self._constrained(name) for key, name in self.hyper_names[site].items()}

    def hyper_values(self) -> dict[str, Tensor]:
        """Every constrained hyper-variable, keyed by its Pyro site name."""
        return {name: self._constrained(name) for name in self.hyper_support}

    def penalty(self) -> Tensor:
        """``R(w, h)``: the prior's per-example penalty summed over all sites (0 without a prior)."""
        weights = self.weights()
        total = next(self.net.parameters()).new_zeros(())
        for site in self.sites:
            total = total + self.prior.penalty(site, weights[site], self.hyper(site), self.n_data)
        return total

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
        for name, param in self.net.named_parameters():
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
        values = {name: p.detach().clone() for name, p in self.net.named_parameters()}
        values.update({name: v.detach().clone() for name, v in self.hyper_values().items()})
        return values

    @torch.no_grad()
    def load_site_values(self, values: Mapping[str, Tensor]) -> None:
        """Set weights and hyper-variables from site values (e.g. a MAP or a posterior mean)."""
        params = dict(self.net.named_parameters())
        unknown = set(values) - set(params) - set(self.hyper_support)
        if unknown:
            raise ConfigError(f"unknown site(s) {sorted(unknown)}")
        for name, value in values.items():
            if name in params:
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
