r"""The fused prior update shared by :class:`~bayes_halo.training.optim.PriorSGD` and
:class:`~bayes_halo.training.adamw.PriorAdamW`: the prior's gradient inside the optimiser's step.

The loss given to ``backward`` is the likelihood term alone (``mean_nll``).  ``step`` then adds
the prior's gradient in closed form (:meth:`~bayes_halo.priors.Prior.penalty_grad`) and applies
the chain rule of the positivity coordinate, for every weight and its hyper-variables, and moves
each tensor by the optimiser's rule, all in one function::

    d_w = g_w + dR/dw(w, h)
    d_r = dR/dh(w, h) * dh/dr                 (abs: h = |r|, dh/dr = sign(r); exp: h = e^r, dh/dr = h)
    w <- rule(w, d_w),  r <- rule(r, d_r)     (the network's group, and the hyper-variables' group)

For a grouping (a group prior's site) ``dR/dW`` of its ``[G, d]`` matrix is scattered into the
member tensors (:meth:`~bayes_halo.groups.Grouping.scatter`), each of which then moves as ``w``.
This is the gradient of ``mean_nll + R(w, h)`` (what ``BayesianModule.objective`` differentiates)
without a forward or backward pass through ``R``: the hyper-variables never enter autograd.
The function runs eagerly, or with ``compile=True`` through ``torch.compile`` as one graph, in
which inductor fuses each tensor's whole update into one pass.  Learning rates and other
step-dependent scalars are 0-d tensors, so a schedule does not make ``torch.compile`` compile
again, and nothing synchronises with the host.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..config.choices import Positivity
from ..errors import ConfigError
from ..models.bayesian import BayesianModule, site_gradients
from ..priors import Prior

#: a tensor's update: ``rule(p, d, state, coef)`` moves ``p`` along the direction ``d`` in place
Rule = Callable[[Tensor, Tensor, Any, tuple], None]
#: one prior-carrying tensor: (site, w, g_w, optimiser state of w, raw hypers by key, their states)
SiteState = tuple[str, Tensor, Tensor, Any, dict[str, Tensor], dict[str, Any]]
#: one tensor without a prior: (p, g_p, optimiser state of p)
PlainState = tuple[Tensor, Tensor, Any]
#: one grouping: (site, grouping, its member tensors by name as PlainStates, raw hypers by key, their states)
GroupState = tuple[str, Any, dict[str, PlainState], dict[str, Tensor], dict[str, Any]]


def fused_update(prior: Prior | None, positivity: Positivity, n_data: int, sites: list[SiteState],
                 groups: list[GroupState], plain: list[PlainState], rule: Rule, coef: tuple, hyper_coef: tuple) -> None:
    """One step of ``rule`` on ``mean_nll + R``, given the likelihood's gradients (see the module docstring)."""
    for site, w, g, state, raws, raw_states in sites:
        grad_w, grad_raw = site_gradients(prior, positivity, n_data, site, w, raws)
        for key, r in raws.items():
            rule(r, grad_raw[key], raw_states[key], hyper_coef)
        rule(w, g + grad_w, state, coef)
    for site, grouping, members, raws, raw_states in groups:
        matrix = grouping.matrix({name: member[0] for name, member in members.items()})
        grad_matrix, grad_raw = site_gradients(prior, positivity, n_data, site, matrix, raws)
        for key, r in raws.items():
            rule(r, grad_raw[key], raw_states[key], hyper_coef)
        for name, grad in grouping.scatter(grad_matrix).items():
            w, g, state = members[name]
            rule(w, g + grad, state, coef)
    for p, g, state in plain:
        rule(p, g, state, coef)


class FusedPriorOptimizer(torch.optim.Optimizer):
    """An optimiser of ``mean_nll + R(w, h)`` whose step applies ``module``'s prior in closed form.

    Two parameter groups, as ``torch.optim`` would have them: the network (``lr``,
    ``weight_decay``) and the hyper-variables in their coordinate (``hyper_lr``, no weight decay).
    A subclass gives the per-tensor ``rule``, each tensor's state (:meth:`tensor_state`) and the
    rule's coefficients of each group (:meth:`coefficients`).  Call ``backward`` on the likelihood
    term only; a hyper-variable holding a gradient (the penalty was back-propagated too, so it
    would count twice) is refused.
    """

    rule: Rule

    def __init__(self, module: BayesianModule, lr: float, weight_decay: float, hyper_lr: float | None,
                 defaults: dict[str, Any], compile: bool, prepare_compile: Callable[[], None] | None = None) -> None:
        groups: list[dict[str, Any]] = [{"params": list(module.network_parameters()), "lr": lr,
                                         "weight_decay": weight_decay}]
        hyper = list(module.hyper_parameters())
        if hyper:
            groups.append({"params": hyper, "lr": lr if hyper_lr is None else hyper_lr, "weight_decay": 0.0})
        super().__init__(groups, {"lr": lr, "weight_decay": 0.0, **defaults})
        self.module = module
        params = dict(module.net.named_parameters())
        groupings = {site: module.groupings[site] for site in module.sites if site in module.groupings}
        tensors = [n for site in module.sites for n in (groupings[site].tensor_names if site in groupings else (site,))]
        missing = [name for name in tensors if name not in params]
        if missing:
            raise ConfigError(f"fused prior update needs {missing} to be parameters (is a pruning mask attached?)")
        self._site_params = {site: params[site] for site in module.sites if site not in groupings}
        self._group_params = {site: (grouping, {n: params[n] for n in grouping.tensor_names})
                              for site, grouping in groupings.items()}
        self._raw = {site: module.raw_hyper(site) for site in module.sites}
        self._taken = {id(w) for w in self._site_params.values()}
        self._taken.update(id(w) for _, members in self._group_params.values() for w in members.values())
        self._scalars: dict[str, tuple[float, Tensor]] = {}
        self._update: Callable[..., None] = fused_update
        if compile:
            if prepare_compile is not None:
                prepare_compile()
            self._update = torch.compile(fused_update, dynamic=False)

    def tensor_state(self, p: Tensor) -> Any:
        """The optimiser's state of ``p`` that ``rule`` updates (created on first use)."""
        raise NotImplementedError

    def coefficients(self) -> tuple[tuple, tuple]:
        """The rule's coefficients for the network's group and for the hyper-variables' group."""
        raise NotImplementedError

    def scalar(self, key: str, value: float, like: Tensor) -> Tensor:
        """``value`` as a 0-d tensor like ``like``, the same tensor refilled only when the value changes.

        A tensor, not a float, so that ``torch.compile`` does not compile again at each new value.
        """
        cached = self._scalars.get(key)
        if cached is None or cached[0] != value:
            tensor = cached[1] if cached is not None else like.new_zeros(())
            cached = (value, tensor.fill_(value))
            self._scalars[key] = cached
        return cached[1]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        coef, hyper_coef = self.coefficients()
        sites: list[SiteState] = []
        for site, w in self._site_params.items():
            raws = self._raws(site)
            sites.append((site, *self._state(w), raws, {key: self.tensor_state(r) for key, r in raws.items()}))
        groups: list[GroupState] = []
        for site, (grouping, members) in self._group_params.items():
            raws = self._raws(site)
            groups.append((site, grouping, {n: self._state(w) for n, w in members.items()}, raws,
                           {key: self.tensor_state(r) for key, r in raws.items()}))
        plain: list[PlainState] = [(p, p.grad, self.tensor_state(p)) for p in self.param_groups[0]["params"]
                                   if id(p) not in self._taken and p.grad is not None]
        self._update(self.module.prior, self.module.positivity, self.module.n_data, sites, groups, plain,
                     type(self).rule, coef, hyper_coef)
        return loss

    def _raws(self, site: str) -> dict[str, Tensor]:
        """The raw hyper-variables of ``site``, refusing ones that hold a gradient."""
        raws = self._raw[site]
        if any(r.grad is not None for r in raws.values()):
            raise ConfigError("fused prior update: back-propagate the likelihood alone, not the penalty "
                              "(a hyper-variable has a gradient, so the prior would count twice)")
        return raws

    def _state(self, w: Tensor) -> PlainState:
        """``(w, g_w, state)``, a zero gradient where the likelihood gave none."""
        return w, w.grad if w.grad is not None else torch.zeros_like(w), self.tensor_state(w)
