r"""SGD with momentum whose step also applies the prior: the fused prior update of the fast path.

The loss given to ``backward`` is the likelihood term alone (``mean_nll``).  ``step`` then adds
the prior's gradient in closed form (:meth:`~bayes_halo.priors.Prior.penalty_grad`), applies the
chain rule of the positivity coordinate and SGD momentum, for every weight and its
hyper-variables, in one function::

    d_w = g_w + weight_decay * w + dR/dw(w, h)
    d_r = dR/dh(w, h) * dh/dr                 (abs: h = |r|, dh/dr = sign(r); exp: h = e^r, dh/dr = h)
    b <- momentum * b + d,   p <- p - lr * b  (torch.optim.SGD's rule, dampening 0, no Nesterov)

For a grouping (a group prior's site) ``dR/dW`` of its ``[G, d]`` matrix is scattered into the
member tensors (:meth:`~bayes_halo.groups.Grouping.scatter`), each of which then moves as ``w``.
This is the gradient of ``mean_nll + R(w, h)`` (what ``BayesianModule.objective`` differentiates)
without a forward or backward pass through ``R``: the hyper-variables never enter autograd.
The function runs eagerly, or with ``compile=True`` through ``torch.compile`` as one graph, in
which inductor fuses each tensor's whole update (prior gradient and momentum) into one pass.
The operations are those of autograd through ``HALO.penalty`` followed by ``torch.optim.SGD``,
in the same order, so the result is bit for bit that of the unfused path (eagerly and, on the CPU,
compiled, checked on this project's machine with torch 2.13 and tested).  Learning rates are
0-d tensors, so a schedule does not make ``torch.compile`` compile again.
Compiled once per process, and from inductor's on-disk cache in later processes.  No host
synchronisation in either.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..groups import Grouping
from ..models.bayesian import BayesianModule, Positivity
from ..priors import Prior

#: one prior-carrying tensor: (site, w, g_w, momentum buffer of w, raw hypers by key, their buffers)
SiteState = tuple[str, Tensor, Tensor, Tensor | None, dict[str, Tensor], dict[str, Tensor | None]]
#: one tensor without a prior: (p, g_p, momentum buffer of p)
PlainState = tuple[Tensor, Tensor, Tensor | None]
#: one grouping: (site, grouping, its member tensors by name as PlainStates, raw hypers by key, their buffers)
GroupState = tuple[str, Grouping, dict[str, PlainState], dict[str, Tensor], dict[str, Tensor | None]]


def _move(param: Tensor, direction: Tensor, buffer: Tensor | None, lr: Tensor, momentum: float) -> None:
    """``b <- momentum b + d; p <- p - lr b`` (``p <- p - lr d`` without momentum), in place.

    ``p - lr b`` is rounded once, as torch.optim.SGD's ``p.add_(b, alpha=-lr)`` (a fused
    multiply-add): eagerly by ``addcmul_``, compiled by inductor's ``fma`` (whose plain
    lowering of ``addcmul`` on the CPU would round twice).
    """
    if buffer is not None:
        direction = buffer.mul_(momentum).add_(direction)
    if torch.compiler.is_compiling():
        param.copy_(torch.ops.prims.fma(direction, -lr, param))  # registered by PriorSGD(compile=True)
    else:
        param.addcmul_(direction, lr, value=-1.0)


def _constrained(raws: dict[str, Tensor], positivity: Positivity) -> dict[str, Tensor]:
    """The hyper-variables ``h`` of raw tensors ``r`` (``|r|`` or ``e^r``)."""
    return {key: r.abs() if positivity == "abs" else r.exp() for key, r in raws.items()}


def _move_hypers(raws: dict[str, Tensor], raw_buffers: dict[str, Tensor | None], hyper: dict[str, Tensor],
                 grad_h: dict[str, Tensor], positivity: Positivity, hyper_lr: Tensor, momentum: float) -> None:
    """Step every raw hyper-variable along ``dR/dh * dh/dr``."""
    for key, r in raws.items():
        chain = r.sign() if positivity == "abs" else hyper[key]
        _move(r, grad_h[key].mul_(chain), raw_buffers[key], hyper_lr, momentum)


def _move_weight(w: Tensor, direction: Tensor, buffer: Tensor | None, lr: Tensor, momentum: float,
                 weight_decay: float) -> None:
    """Step a network tensor along ``direction + weight_decay * w`` (as torch.optim.SGD)."""
    if weight_decay:
        direction = direction.add(w, alpha=weight_decay)
    _move(w, direction, buffer, lr, momentum)


def fused_update(prior: Prior | None, positivity: Positivity, n_data: int, sites: list[SiteState],
                 groups: list[GroupState], plain: list[PlainState], lr: Tensor, hyper_lr: Tensor, momentum: float,
                 weight_decay: float) -> None:
    """One SGD step on ``mean_nll + R``, given the likelihood's gradients (see the module docstring)."""
    for site, w, g, buffer, raws, raw_buffers in sites:
        hyper = _constrained(raws, positivity)
        grad_w, grad_h = prior.penalty_grad(site, w, hyper, n_data)
        _move_hypers(raws, raw_buffers, hyper, grad_h, positivity, hyper_lr, momentum)
        _move_weight(w, g + grad_w, buffer, lr, momentum, weight_decay)
    for site, grouping, members, raws, raw_buffers in groups:
        hyper = _constrained(raws, positivity)
        matrix = grouping.matrix({name: state[0] for name, state in members.items()})
        grad_matrix, grad_h = prior.penalty_grad(site, matrix, hyper, n_data)
        _move_hypers(raws, raw_buffers, hyper, grad_h, positivity, hyper_lr, momentum)
        for name, grad in grouping.scatter(grad_matrix).items():
            w, g, buffer = members[name]
            _move_weight(w, g + grad, buffer, lr, momentum, weight_decay)
    for p, g, buffer in plain:
        _move_weight(p, g, buffer, lr, momentum, weight_decay)


class PriorSGD(torch.optim.Optimizer):
    """SGD with momentum on ``mean_nll + R(w, h)`` of ``module``, the prior's part inside ``step``.

    Two parameter groups, as ``torch.optim.SGD`` would have them: the network (``lr``,
    ``weight_decay``) and the hyper-variables in their coordinate (``hyper_lr``, no weight decay).
    Call ``backward`` on the likelihood term only; a hyper-variable holding a gradient (the
    penalty was back-propagated too, so it would count twice) is refused.

    Args:
        module: the network and its prior.
        lr, momentum, weight_decay, hyper_lr: as ``torch.optim.SGD`` (``hyper_lr`` defaults to ``lr``).
        compile: run the update through ``torch.compile`` (one fused pass per tensor).
    """

    def __init__(self, module: BayesianModule, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 hyper_lr: float | None = None, compile: bool = False) -> None:
        groups: list[dict[str, Any]] = [{"params": list(module.network_parameters()), "lr": lr,
                                         "weight_decay": weight_decay}]
        hyper = list(module.hyper_parameters())
        if hyper:
            groups.append({"params": hyper, "lr": lr if hyper_lr is None else hyper_lr, "weight_decay": 0.0})
        super().__init__(groups, {"lr": lr, "momentum": momentum, "weight_decay": 0.0})
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
        self._raw = {site: {key: module.hyper_raw[name.replace(".", "/")] for key, name in names.items()}
                     for site, names in module.hyper_names.items()}
        self._lr_tensors: dict[int, tuple[float, Tensor]] = {}
        self._update: Callable[..., None] = fused_update
        if compile:
            import torch._inductor.inductor_prims  # noqa: F401  (registers torch.ops.prims.fma; slow to import)
            self._update = torch.compile(fused_update, dynamic=False)

    def _buffer(self, p: Tensor, momentum: float) -> Tensor | None:
        if not momentum:
            return None
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    def _lr(self, index: int, like: Tensor) -> Tensor:
        """Group ``index``'s learning rate as a 0-d tensor like ``like``, refilled only when it changes.

        A tensor, not a float, so that ``torch.compile`` does not compile again at each new value.
        """
        value = float(self.param_groups[index]["lr"])
        cached = self._lr_tensors.get(index)
        if cached is None or cached[0] != value:
            tensor = cached[1] if cached is not None else like.new_zeros(())
            cached = (value, tensor.fill_(value))
            self._lr_tensors[index] = cached
        return cached[1]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        network = self.param_groups[0]
        momentum, weight_decay = float(network["momentum"]), float(network["weight_decay"])
        hyper_momentum = float(self.param_groups[-1]["momentum"])
        if hyper_momentum != momentum:
            raise ConfigError("fused prior update: both parameter groups need the same momentum")
        sites: list[SiteState] = []
        for site, w in self._site_params.items():
            raws = self._raws(site)
            sites.append((site, *self._state(w, momentum), raws,
                          {key: self._buffer(r, momentum) for key, r in raws.items()}))
        groups: list[GroupState] = []
        for site, (grouping, members) in self._group_params.items():
            raws = self._raws(site)
            groups.append((site, grouping, {n: self._state(w, momentum) for n, w in members.items()}, raws,
                           {key: self._buffer(r, momentum) for key, r in raws.items()}))
        taken = {id(w) for w in self._site_params.values()}
        taken.update(id(w) for _, members in self._group_params.values() for w in members.values())
        plain: list[PlainState] = [(p, p.grad, self._buffer(p, momentum)) for p in network["params"]
                                   if id(p) not in taken and p.grad is not None]
        first = network["params"][0]
        self._update(self.module.prior, self.module.positivity, self.module.n_data, sites, groups, plain,
                     self._lr(0, first), self._lr(len(self.param_groups) - 1, first), momentum, weight_decay)
        return loss

    def _raws(self, site: str) -> dict[str, Tensor]:
        """The raw hyper-variables of ``site``, refusing ones that hold a gradient."""
        raws = self._raw[site]
        if any(r.grad is not None for r in raws.values()):
            raise ConfigError("fused prior update: back-propagate the likelihood alone, not the penalty "
                              "(a hyper-variable has a gradient, so the prior would count twice)")
        return raws

    def _state(self, w: Tensor, momentum: float) -> PlainState:
        """``(w, g_w, buffer)``, a zero gradient where the likelihood gave none."""
        return w, w.grad if w.grad is not None else torch.zeros_like(w), self._buffer(w, momentum)


#: weight-steps (prior-carrying weights x training steps) from which "auto" compiles the update.
#: Measured with benchmarks/step_time.py on LeNet-300-100 (266,200 weights, 2 CPU threads): the
#: compiled update saves about 1 ms a step, about 4 ns per weight-step, and compiling costs about
#: 10 s from inductor's cache (25 s the first time), so it pays from about 2e9 weight-steps; the
#: default run (16,500 steps) has 4.4e9.
COMPILE_FROM_WEIGHT_STEPS = 2e9


def compile_pays(module: BayesianModule, n_steps: int) -> bool:
    """Whether compiling the fused update pays for ``n_steps`` steps (and a C++ compiler exists on CPU)."""
    weights = list(module.weights().values())
    if not weights:
        return False
    on_cpu = weights[0].device.type == "cpu"
    if on_cpu and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return False  # inductor's CPU backend builds C++
    return n_steps * sum(w.numel() for w in weights) >= COMPILE_FROM_WEIGHT_STEPS
