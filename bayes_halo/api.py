"""The own-loop entry point: put a prior on any ``nn.Module`` and train it with your loop and optimiser.

    model = bayes_halo.attach(net, bayes_halo.HALO(xi=5e-5, psi=1e-4), n_data=len(train_set))
    model.attach_optimizer(optimizer)          # the prior's step inside every optimizer.step()
    ...                                        # your loop: loss = F.cross_entropy(model(x), y) ...
    model.prune(keep=0.05)                     # exact zeros, in place
    small = model.export(input_shape=(1, 28, 28))

Everything else is a method of the returned :class:`~bayes_halo.models.bayesian.BayesianModule`
(``penalty``, ``prior_gradients``, ``add_prior_grad_``, ``state_dict``/``load_state_dict``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from .config.choices import DEFAULT_POSITIVITY, Positivity
from .errors import ConfigError
from .groups import Grouping
from .models.bayesian import BayesianModule
from .models.likelihoods import Likelihood
from .models.selection import Layers, prunable_parameters
from .priors import Prior, SitePriors


def attach(net: nn.Module, prior: Prior, n_data: int, *, layers: Layers = None,
           per_layer: Mapping[str, Prior] | None = None, include_bias: bool = False,
           likelihood: Likelihood | None = None, positivity: Positivity = DEFAULT_POSITIVITY,
           groups: str | Sequence[Grouping] = "weight", example_input: Tensor | None = None) -> BayesianModule:
    """``net`` with ``prior`` on the weights of its chosen layers; ``model(x)`` is ``net(x)``.

    Args:
        net: any module; it is held (not copied) as ``model.net``: its parameters are trained.
        prior: the prior of every chosen layer (strengths per example: ``R`` is added to the *mean* loss).
        n_data: ``N``, the number of training examples.
        layers: which layers carry the prior: a module type or tuple of types (``nn.Conv2d``),
            layer names (``["fc1", "fc2"]``) or a predicate ``(name, module) -> bool``;
            default: every ``nn.Linear`` and ``nn.Conv1d/2d/3d``.
        per_layer: ``{layer name: prior}`` overriding ``prior`` on those layers (same class, other
            strengths; e.g. a weaker ``xi`` on the classifier).
        include_bias: the chosen layers' biases carry the prior too.
        likelihood: the observation model of ``model.objective``/``model.model`` (default: categorical on logits).
        positivity: the coordinate of the positive hyper-variables (``"abs"``, as on the command line).
        groups: ``"weight"`` (one prior scale per weight, the default), a structure of
            :mod:`bayes_halo.groups.structures` (``"unit"``, ``"out-unit"``, ``"bn-scale"``; heads and MLP
            units of a transformer are ``"unit"`` groups) or a sequence of
            :class:`~bayes_halo.groups.Grouping`; with groups ``prior`` is a group prior
            (``GroupHALO``, ``GroupLaplace``, ...), one scale per group.
        example_input: a batch ``net`` accepts, to trace channels coupled by residual sums (convolutional structures).
    """
    if per_layer and groups != "weight":
        raise ConfigError("`per_layer` sets per-weight priors layer by layer: with `groups`, give one group prior")
    if per_layer:
        chosen = prunable_parameters(net, include_bias=include_bias, layers=layers)
        unknown = sorted(set(per_layer) - {site.rpartition(".")[0] for site in chosen})
        if unknown:
            raise ConfigError(f"`per_layer` names layers that carry no prior: {unknown}")
        prior = SitePriors(prior, {site: per_layer[site.rpartition(".")[0]] for site in chosen
                                   if site.rpartition(".")[0] in per_layer})
    return BayesianModule(net, prior, n_data, likelihood=likelihood, include_bias=include_bias,
                          positivity=positivity, layers=layers, groups=groups, example_input=example_input)
