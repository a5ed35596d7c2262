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

from collections.abc import Iterable, Iterator, Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import biject_to, constraints

from ..config.choices import DEFAULT_POSITIVITY, POSITIVITIES, Positivity
from ..errors import ConfigError
from ..groups import Grouping, build_groupings, check_groupings
from ..priors import GroupPrior, Prior, hyper_site_name
from .likelihoods import Categorical, Likelihood
from .selection import Layers, Scope, parameter_dict_key, prunable_layers, prunable_parameters, tensor_at


def site_gradients(prior: Prior, positivity: Positivity, n_data: int, site: str, value: Tensor,
                   raws: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``(dR/dvalue, {key: dR/dr})`` of one site from the prior's closed form, ``r`` the raw hyper-variables.

    ``value`` is what the prior sees: a weight tensor, or a grouping's ``[G, d]`` matrix.

    ``h = |r|`` (``dh/dr = sign(r)``) or ``h = exp(r)`` (``dh/dr = h``); ``dR/dr = dR/dh * dh/dr``.
    Fresh tensors: the caller may overwrite them.
    """
    hyper = {key: r.abs() if positivity == "abs" else r.exp() for key, r in raws.items()}
    grad_w, grad_h = prior.penalty_grad(site, value, hyper, n_data)
    return grad_w, {key: grad_h[key].mul_(r.sign() if positivity == "abs" else hyper[key])
                    for key, r in raws.items()}



class BayesianModule(nn.Module):
    """A network ``net`` with ``prior`` on its prunable weights and ``likelihood`` on its outputs.

    Args:
        net: any module mapping a batch ``x`` to outputs.
        prior: the prior on every selected weight tensor, or ``None`` (maximum likelihood).
        n_data: ``N``, the number of training examples (sets the prior's total rates).
        likelihood: observation model (default: categorical on logits).
        scope, include_bias, exclude, layers: which parameters get the prior
            (see :func:`bayes_halo.models.selection.prunable_parameters`).
        positivity: how trainable tensors map to the (positive) hyper-variables: ``"abs"``
            (the default, as on the command line) or ``"exp"`` (see the module docstring).
        groups: ``"weight"`` (per-weight sites, the default), a structure name of
            :mod:`bayes_halo.groups.structures` (``"unit"``, ``"out-unit"``, ``"bn-scale"``) built
            on the layers in scope, or a sequence of :class:`~bayes_halo.groups.Grouping`; with
            groupings the prior must be a group prior and its sites are the groupings.
        example_input: a batch ``net`` accepts, to trace its channel coupling (structures that need it).
    """

    def __init__(self, net: nn.Module, prior: Prior | None, n_data: int,
                 likelihood: Likelihood | None = None, scope: Scope = "all",
                 include_bias: bool = False, exclude: Iterable[str] = (), positivity: Positivity = DEFAULT_POSITIVITY,
                 layers: Layers = None, groups: str | Sequence[Grouping] = "weight",
                 example_input: Tensor | None = None) -> None:
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
        selected = prunable_parameters(net, scope, include_bias, exclude, layers)
        #: names of the selected (prunable) tensors, with or without a prior
        self.prunable: tuple[str, ...] = tuple(selected)
        groupings = (build_groupings(groups, net, prunable_layers(net, scope, exclude, layers), example_input)
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

    def objective(self, x: Tensor, y: Tensor) -> Tensor:
        """The fast training objective ``mean_nll(net(x), y) + penalty()``."""
        return self.likelihood.mean_nll(self.net(x), y) + self.penalty()

    def raw_hyper(self, site: str) -> dict[str, nn.Parameter]:
        """The trainable (unconstrained) hyper-variables of ``site``, keyed by short name."""
        return {key: self.hyper_raw[parameter_dict_key(name)] for key, name in self.hyper_names[site].items()}

    @torch.no_grad()
    def prior_gradients(self) -> list[tuple[Tensor, Tensor]]:
        """``(parameter, dR/dparameter)`` for every prior-carrying tensor and raw hyper-variable.

        From the closed forms (:meth:`~bayes_halo.priors.Prior.penalty_grad`, positivity chain rule
        applied by :func:`site_gradients`): no autograd through the penalty, no host
        synchronisation.  A site's ``dR/dvalue`` is the tensor's gradient (per-weight site) or is
        scattered into the member tensors (grouping).
        """
        params = dict(self.net.named_parameters())
        pairs: list[tuple[Tensor, Tensor]] = []
        for site in self.sites:
            grouping = self.groupings.get(site)
            missing = [n for n in (grouping.tensor_names if grouping is not None else (site,)) if n not in params]
            if missing:
                raise ConfigError(f"{', '.join(missing)} not a parameter (is a pruning mask attached?)")
            raws = self.raw_hyper(site)
            grad_value, grad_raw = site_gradients(self.prior, self.positivity, self.n_data, site,
                                                  self.site_value(site), raws)
            grads = grouping.scatter(grad_value) if grouping is not None else {site: grad_value}
            pairs.extend((params[name], grad) for name, grad in grads.items())
            pairs.extend((raws[key], grad_raw[key]) for key in raws)
        return pairs

    @torch.no_grad()
    def add_prior_grad_(self) -> None:
        """``p.grad += dR/dp`` for every pair of :meth:`prior_gradients` (Torch-Pruning's ``regularize``).

        Call it after ``backward()`` on the likelihood alone and before ``optimizer.step()`` (after
        ``GradScaler.unscale_``): the step is then one on ``mean_nll + R``.  Right for SGD; for
        adaptive optimisers see :meth:`attach_optimizer`.
        """
        for param, grad in self.prior_gradients():
            if param.grad is None:
                param.grad = grad
            else:
                param.grad.add_(grad)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer, method: str = "auto", hyper: str = "auto",
                         hyper_lr: float | None = None, compile: bool = False):
        """Apply the prior inside every ``optimizer.step()`` (see :mod:`bayes_halo.training.prior_step`).

        ``method``: ``"coupled"`` (``torch.optim.SGD``'s default: PriorSGD's update),
        ``"decoupled"`` or ``"proximal"`` (the default for every other optimiser); ``hyper``:
        ``"optimizer"`` (the hyper-variables in their own group of ``optimizer``, no weight decay,
        learning rate ``hyper_lr``) or ``"profile"``.  Returns the
        :class:`~bayes_halo.training.prior_step.PriorStep` (``.remove()`` detaches it).
        """
        from ..training.prior_step import PriorStep
        return PriorStep(self, optimizer, method, hyper, hyper_lr, compile)

    @torch.no_grad()
    def prune(self, keep: float, criterion: str = "magnitude", by: str = "global") -> dict[str, Tensor]:
        """Set all but the ``keep`` fraction of the prior's weights to exactly zero, in place.

        ``criterion``: ``"magnitude"`` (``|w_j|``) or the prior's learned coefficient (HALO:
        ``"halo-coefficient"``, keep the smallest ``xi / lambda_j^2``); ``by``: ``"global"`` or
        ``"layer"``.  Returns the boolean keep masks by parameter name.
        """
        from ..pruning.masks import keep_masks
        from ..pruning.sweep import pruning_criteria
        criteria = pruning_criteria(self)
        if criterion not in criteria:
            raise ConfigError(f"unknown `criterion` {criterion!r}: choose one of {', '.join(criteria)}")
        masks = keep_masks(criteria[criterion], keep, by)
        for name, mask in masks.items():
            tensor_at(self.net, name).masked_fill_(~mask.to(device=mask.device), 0.0)
        return masks

    def export(self, input_shape: tuple[int, ...]):
        """The (pruned) network as the smaller network it computes, for inputs of one example's ``input_shape``.

        Returns :class:`~bayes_halo.export.network.ExportedNetwork`: ``.network`` runs it,
        ``.save(path)`` writes a ``torch.export`` program (``.pt2``) that
        :func:`bayes_halo.export.load_export` (or ``torch.export.load(path).module()``) reads.
        """
        import copy

        from ..export.network import export_network
        return export_network(copy.deepcopy(self.net).eval(), tuple(input_shape))

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

    def network_values(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Network parameters by name from latent site values (or draws with leading dims): each
        grouping's matrix scattered into its members, hyper-variables left out."""
        out: dict[str, Tensor] = {}
        for name, value in values.items():
            if name in self.groupings:
                out.update(self.groupings[name].scatter(value))
            elif name not in self.hyper_support:
                out[name] = value
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
