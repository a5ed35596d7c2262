r"""The prior's step inside any ``torch.optim`` optimiser: coupled, decoupled or proximal.

``module.attach_optimizer(optimizer, method)`` registers hooks on ``optimizer`` so that every
``optimizer.step()`` also applies the prior ``R(w, h)`` of ``module``; the loop back-propagates
the likelihood alone.  ``lr`` below is the optimiser's learning rate of ``w``'s group at that
step (schedulers are followed); the hyper-variables ``r`` (HALO's lambdas, in their positivity
coordinate) get ``dR/dr`` as their gradient and are stepped by the optimiser itself, in their own
group without weight decay.

* ``"coupled"``: ``g_w <- g_w + dR/dw`` before the step (:meth:`BayesianModule.add_prior_grad_`):
  the optimiser steps on ``mean_nll + R``.  For SGD this is :class:`~bayes_halo.training.optim.PriorSGD`'s
  update.  An adaptive optimiser divides ``dR/dw`` by its per-coordinate scale, so a weight
  whose likelihood gradient is small is pushed by ``lr`` a step whatever the prior's strength,
  and the penalty no longer shrinks small weights more than large ones (issue 18: 29 % instead
  of 93 % at 5 % kept).
* ``"decoupled"``: ``w <- w - lr dR/dw`` before the step, outside the preconditioner, as AdamW
  decouples weight decay.
* ``"proximal"``: after the step ``w <- prox_{lr R(., h)}(w)``; for the lasso-type priors
  (Laplace, adaptive Laplace, HALO) soft thresholding at ``lr xi / lambda_j^2``, which leaves
  exact zeros.  A prior without a closed-form proximal map (the group priors among them) gets the
  decoupled step; a grouping's step moves its member tensors.

The hyper-variables (``hyper``): ``"optimizer"`` steps them with the optimiser on ``dR/dr`` (as
above); ``"profile"`` (proximal only) sets them after each step to their exact minimiser at the
current weights, ``h <- argmin_h R(w, h)`` (:meth:`~bayes_halo.priors.Prior.profile`; HALO:
``lambda_j = (2 xi |w_j| / psi)^(1/3)``) before the proximal step: block-coordinate descent on
``R``, with no optimiser state and no learning rate for the hyper-variables.
* ``"auto"`` (the default): coupled for ``torch.optim.SGD`` (exactly PriorSGD), :data:`ADAPTIVE_DEFAULT`
  for every other optimiser, chosen by validation accuracy after pruning on LeNet-300-100
  (``experiments/own_loop/README.md``, 30 epochs): there, with the lambdas stepped by AdamW in
  their own group (no weight decay), the coupled step pruned best (98.2 % test at 5 % kept and
  98.0 % at 2 %, within 0.15 points of the SGD path); the decoupled and proximal steps need a far
  larger ``xi`` and prune worse, and the proximal step with AdamW-stepped lambdas diverged.
  :class:`~bayes_halo.training.adamw.PriorAdamW` is this coupled step fused into AdamW's update.

The decoupled and proximal steps are the proximal-gradient view of the objective: the likelihood
is followed with the optimiser's preconditioned step, the prior with its own exact (proximal) or
explicit (decoupled) step of size ``lr``.  Strengths are per example as everywhere, but their
scale relative to the likelihood's step differs from SGD's (Adam normalises the likelihood's
gradient, not the prior's step), so tune ``xi`` for the adaptive optimiser as one tunes AdamW's
weight decay.

Works with gradient accumulation (the hooks run once per ``step``), ``GradScaler`` (its
``step`` unscales before calling ``optimizer.step``, and a skipped step skips the prior too),
LR schedulers, and DistributedDataParallel on the network (every rank applies the same prior
step to the same weights, with no communication).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config.choices import Positivity
from ..errors import ConfigError
from ..priors import Prior

METHODS = ("auto", "coupled", "decoupled", "proximal")
HYPER = ("auto", "optimizer", "profile")
#: the method "auto" picks for optimisers other than torch.optim.SGD: the best validation accuracy
#: after pruning among the measured options (experiments/own_loop/README.md)
ADAPTIVE_DEFAULT = "coupled"

#: one prior-carrying weight of the proximal update: (site, w, raw hyper-variables by key)
ProxSite = tuple[str, Tensor, dict[str, Tensor]]


def resolve(method: str, hyper: str, optimizer: torch.optim.Optimizer, profiled: bool) -> tuple[str, str]:
    """``(method, hyper)`` with ``"auto"`` resolved for ``optimizer``.

    ``hyper="auto"``: ``"profile"`` for the proximal step when every site has a closed-form profile
    (``profiled``; with AdamW-stepped lambdas the proximal step diverged), else ``"optimizer"``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown prior-step `method` {method!r}; choose one of {', '.join(METHODS)}")
    if hyper not in HYPER:
        raise ConfigError(f"unknown prior-step `hyper` {hyper!r}; choose one of {', '.join(HYPER)}")
    adaptive = type(optimizer) is not torch.optim.SGD
    method = method if method != "auto" else ADAPTIVE_DEFAULT if adaptive else "coupled"
    hyper = hyper if hyper != "auto" else "profile" if method == "proximal" and profiled else "optimizer"
    if hyper == "profile" and method != "proximal":
        raise ConfigError("`hyper='profile'` goes with the proximal step only")
    return method, hyper


def has_proximal(prior: Prior) -> bool:
    """Whether ``prior`` (a per-site prior) has a closed-form proximal map."""
    return type(prior).proximal is not Prior.proximal


def proximal_update(prior: Prior, positivity: Positivity, sites: list[ProxSite], lrs: list[Tensor],
                    profile: bool) -> None:
    """``[h <- argmin_h R(w, h);]  w <- prox_{lr R(., h)}(w)`` for every site, in place."""
    for (site, w, raws), lr in zip(sites, lrs):
        if profile:
            hyper = prior.profile(site, w)
            for key, r in raws.items():
                r.copy_(hyper[key] if positivity == "abs" else hyper[key].log())
        else:
            hyper = {key: r.abs() if positivity == "abs" else r.exp() for key, r in raws.items()}
        w.copy_(prior.proximal(site, w, hyper, lr))


class PriorStep:
    """The hooks that apply ``module``'s prior inside ``optimizer.step()`` (see the module docstring).

    :meth:`before` runs as the optimiser's step pre-hook and :meth:`after` as its post-hook.  With
    ``before_hook=False`` the caller runs :meth:`before` itself once the gradients exist: a
    closure-driven step (Lightning, LBFGS) computes them *inside* ``step``, after the pre-hooks.
    ``compile=True`` runs the proximal update through ``torch.compile`` (one pass per tensor).
    """

    def __init__(self, module, optimizer: torch.optim.Optimizer, method: str = "auto", hyper: str = "auto",
                 hyper_lr: float | None = None, compile: bool = False, before_hook: bool = True) -> None:
        self.module, self.optimizer = module, optimizer
        prior, weights = module.prior, module.weights()
        missing = [site for site in module.sites if not has_proximal(prior.at(site))
                   or (module.hyper_names[site] and prior.at(site).profile(site, weights[site].detach()) is None)]
        self.method, self.hyper = resolve(method, hyper, optimizer, profiled=not missing)
        self._proximal = [site for site in module.sites if self.method == "proximal" and has_proximal(prior.at(site))]
        if self.hyper == "profile":
            if missing:
                raise ConfigError(f"the prior has no closed-form proximal map or profile on {missing}: "
                                  "use hyper='optimizer'")
        group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        if self.hyper == "optimizer":
            self._add_hyper(optimizer, group_of, hyper_lr)
        params = dict(module.net.named_parameters())
        #: every prior-carrying tensor's name -> its site (a per-weight site, or a grouping it is a member of)
        self._site_of = {name: site for site in module.sites
                         for name in (module.groupings[site].tensor_names if site in module.groupings else (site,))}
        missing = [name for name in self._site_of if id(params.get(name)) not in group_of]
        if missing:
            raise ConfigError(f"the optimiser does not hold the prior's weights {missing}")
        #: tensor name -> (tensor, its parameter group)
        self._weights = {name: (params[name], group_of[id(params[name])]) for name in self._site_of}
        self._site_ids = {id(w) for w, _ in self._weights.values()}
        self._lr_tensors: dict[int, tuple[float, Tensor]] = {}
        self._update = torch.compile(proximal_update, dynamic=False) if compile else proximal_update
        self._handles = []
        if before_hook:
            self._handles.append(optimizer.register_step_pre_hook(lambda *_: self.before()))
        if self._proximal:
            self._handles.append(optimizer.register_step_post_hook(lambda *_: self.after()))

    def _add_hyper(self, optimizer: torch.optim.Optimizer, group_of: dict[int, dict], hyper_lr: float | None) -> None:
        """The hyper-variables into ``optimizer`` as their own group without weight decay (unless it has them)."""
        hyper = [r for site in self.module.sites for r in self.module.raw_hyper(site).values()]
        held = [r for r in hyper if id(r) in group_of]
        if held and len(held) != len(hyper):
            raise ConfigError("the optimiser holds some of the prior's hyper-variables but not all")
        if any(group_of[id(r)].get("weight_decay", 0.0) for r in held):
            raise ConfigError("the prior's hyper-variables are in a group with weight decay, which would change "
                              "their prior: put them in a group with weight_decay=0 (or leave them out: "
                              "attach_optimizer adds them)")
        if hyper and not held:
            group: dict[str, Any] = {"params": hyper, "weight_decay": 0.0}
            if hyper_lr is not None:
                group["lr"] = hyper_lr
            optimizer.add_param_group(group)
            group_of.update({id(r): optimizer.param_groups[-1] for r in hyper})

    def remove(self) -> None:
        """Detach the hooks (hyper-variables added to the optimiser stay there)."""
        for handle in self._handles:
            handle.remove()

    def _lr(self, group: dict[str, Any], like: Tensor) -> Tensor:
        """``group``'s learning rate as a 0-d tensor, refilled when a schedule changes it (no recompiling)."""
        value = float(group["lr"])
        cached = self._lr_tensors.get(id(group))
        if cached is None or cached[0] != value:
            cached = (value, like.new_full((), value))
            self._lr_tensors[id(group)] = cached
        return cached[1]

    @torch.no_grad()
    def before(self) -> None:
        """After backward, before the step.  Coupled: every gradient; otherwise the hyper-variables' gradients
        (``hyper="optimizer"``) and the decoupled steps."""
        if self.method == "proximal" and self.hyper == "profile" and len(self._proximal) == len(self.module.sites):
            return
        if self.method == "coupled":
            self.module.add_prior_grad_()
            return
        moved = {id(w): name for name, (w, _) in self._weights.items() if self._site_of[name] not in self._proximal}
        for param, grad in self.module.prior_gradients():
            name = moved.get(id(param))
            if name is not None:
                param.sub_(grad.mul_(self._lr(self._weights[name][1], param)))
            elif id(param) not in self._site_ids and self.hyper == "optimizer":
                param.grad = grad if param.grad is None else param.grad.add_(grad)

    @torch.no_grad()
    def after(self) -> None:
        """Proximal: ``[h <- argmin R(w, .)]; w <- prox_{lr R(., h)}(w)``."""
        sites = [(site, self._weights[site][0], self.module.raw_hyper(site)) for site in self._proximal]
        lrs = [self._lr(self._weights[site][1], w) for site, w, _ in sites]
        self._update(self.module.prior, self.module.positivity, sites, lrs, self.hyper == "profile")
