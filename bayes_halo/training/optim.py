r"""SGD with momentum whose step also applies the prior: the fused prior update of the fast path.

:class:`~bayes_halo.training.fused.FusedPriorOptimizer` with ``torch.optim.SGD``'s rule
(dampening 0, no Nesterov) for every tensor::

    d <- d + weight_decay * w                 (the network's group only)
    b <- momentum * b + d,   p <- p - lr * b

The operations are those of autograd through ``HALO.penalty`` followed by ``torch.optim.SGD``,
in the same order, so the result is bit for bit that of the unfused path (eagerly and, on the CPU,
compiled, checked on this project's machine with torch 2.13 and tested).
Compiled once per process, and from inductor's on-disk cache in later processes.
"""
from __future__ import annotations

import shutil
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from .fused import FusedPriorOptimizer


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


def sgd_rule(param: Tensor, direction: Tensor, buffer: Tensor | None, coef: tuple[Tensor, float, float]) -> None:
    """torch.optim.SGD's step of one tensor: ``coef = (lr, momentum, weight_decay)``."""
    lr, momentum, weight_decay = coef
    if weight_decay:
        direction = direction.add(param, alpha=weight_decay)
    _move(param, direction, buffer, lr, momentum)


def _register_fma() -> None:
    import torch._inductor.inductor_prims  # noqa: F401  (registers torch.ops.prims.fma; slow to import)


class PriorSGD(FusedPriorOptimizer):
    """SGD with momentum on ``mean_nll + R(w, h)`` of ``module``, the prior's part inside ``step``.

    Two parameter groups, as ``torch.optim.SGD`` would have them: the network (``lr``,
    ``weight_decay``) and the hyper-variables in their coordinate (``hyper_lr``, no weight decay).
    Call ``backward`` on the likelihood term only.

    Args:
        module: the network and its prior.
        lr, momentum, weight_decay, hyper_lr: as ``torch.optim.SGD`` (``hyper_lr`` defaults to ``lr``).
        compile: run the update through ``torch.compile`` (one fused pass per tensor).
    """

    rule = staticmethod(sgd_rule)

    def __init__(self, module: BayesianModule, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 hyper_lr: float | None = None, compile: bool = False) -> None:
        super().__init__(module, lr, weight_decay, hyper_lr, {"momentum": momentum}, compile, _register_fma)

    def tensor_state(self, p: Tensor) -> Tensor | None:
        """The momentum buffer of ``p`` (None without momentum)."""
        momentum = float(self.param_groups[0]["momentum"])
        if not momentum:
            return None
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    def coefficients(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        network, hyper = self.param_groups[0], self.param_groups[-1]
        momentum = float(network["momentum"])
        if float(hyper["momentum"]) != momentum:
            raise ConfigError("fused prior update: both parameter groups need the same momentum")
        like = network["params"][0]
        return ((self.scalar("lr", float(network["lr"]), like), momentum, float(network["weight_decay"])),
                (self.scalar("hyper_lr", float(hyper["lr"]), like), momentum, 0.0))


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
