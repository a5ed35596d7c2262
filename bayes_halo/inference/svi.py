"""Stochastic variational inference started at the MAP: posterior means, sds, draws, predictions.

Two engines fit the same mean-field Gaussian ``q`` over every unconstrained latent site of
``module.model`` (network parameters real; hyper-variables through ``biject_to(support)``):

* ``engine="fast"`` (default for ``guide="normal"``): :class:`MeanFieldGaussian`, plain torch,
  the estimator ``N * mean_nll + N * R - log|J| - H[q]`` (see :mod:`.fast_svi`);
* ``engine="pyro"``: ``Trace_ELBO`` with ``AutoNormal`` (or, ``guide="lowrank"``, an
  ``AutoGuideList`` of ``AutoNormal`` on the weights and biases and
  ``AutoLowRankMultivariateNormal(rank)`` on all hyper-variables jointly, which captures
  correlations between HALO's scales).  Generic, and on LeNet-300-100 much slower.

Both train by Adam on shuffled mini-batches (the data plate / the ``N * mean_nll`` term rescale the
batch by ``N/B``), with cosine learning-rate decay to zero so the last iterate is not dominated by
gradient noise.  The module is only read: it stays at its MAP values.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import InitMessenger, init_to_value
from torch import Tensor, nn
from torch.distributions import Transform, biject_to
from torch.distributions.transforms import AffineTransform, ComposeTransform, ExpTransform, IndependentTransform
from tqdm.auto import tqdm

from ..data import iterate_minibatches
from ..errors import ConfigError, DivergenceError
from ..models.bayesian import BayesianModule
from ..models.likelihoods import Likelihood
from .fast_svi import Marginal, MeanFieldGaussian

Guide = Literal["normal", "lowrank"]
Engine = Literal["fast", "pyro"]


@dataclass
class SVIResult:
    """A fitted guide over ``module``'s latent sites, with ``-ELBO`` per step and per epoch.

    ``guide`` is a :class:`MeanFieldGaussian` (fast engine) or a Pyro autoguide.
    ``losses[t]`` is the step-``t`` estimate of ``-ELBO`` on its mini-batch (both engines include
    every normalising constant, so their values compare); ``epoch_losses`` are per-epoch means.
    """

    guide: nn.Module
    module: BayesianModule
    losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)

    def marginals(self) -> dict[str, Marginal]:
        """Per-site marginal of ``q`` in unconstrained space: ``(loc, scale, T)``."""
        with pyro.settings.context(module_local_params=True):
            return {name: marginal for part in self._parts() for name, marginal in _marginals(part).items()}

    def mean(self) -> dict[str, Tensor]:
        """Posterior mean of every site in constrained space (exact, see :func:`constrained_moments`)."""
        return {name: constrained_moments(*m)[0] for name, m in self.marginals().items()}

    def sd(self) -> dict[str, Tensor]:
        """Posterior sd of every site in constrained space: exact, not sampled; the lognormal
        formula for positive sites (see :func:`constrained_moments`)."""
        return {name: constrained_moments(*m)[1] for name, m in self.marginals().items()}

    @torch.no_grad()
    def sample(self, num_samples: int, seed: int = 0, sites: Collection[str] | None = None) -> dict[str, Tensor]:
        """``num_samples`` joint draws from ``q``: ``{site: Tensor (S, *site_shape)}``, constrained.

        Vectorised: mean-field parts from their marginals, the low-rank part from its joint
        Gaussian.  The global RNG is left untouched; the same ``seed`` gives the same draws
        whatever ``sites`` (a subset of site names to keep, default all).
        """
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {num_samples}")
        draws: dict[str, Tensor] = {}
        device = next(self.module.parameters()).device
        forked = [device] if device.type == "cuda" else []  # the CPU's generator is always forked
        with torch.random.fork_rng(devices=forked), pyro.settings.context(module_local_params=True):
            torch.manual_seed(seed)
            for part in self._parts():
                if isinstance(part, AutoLowRankMultivariateNormal):
                    latent = part.get_posterior().sample((num_samples,))
                    draws.update({site["name"]: biject_to(site["fn"].support)(u)
                                  for site, u in part._unpack_latent(latent)})
                else:
                    draws.update({name: m.transform(m.loc + m.scale * torch.randn(num_samples, *m.loc.shape,
                                                                                   dtype=m.loc.dtype,
                                                                                   device=m.loc.device))
                                  for name, m in _marginals(part).items()})
        return {name: value for name, value in draws.items() if sites is None or name in sites}

    def predictive(self, x: Tensor, num_samples: int = 100, seed: int = 0,
                   masks: Mapping[str, Tensor] | None = None) -> Tensor:
        """Posterior predictive ``E_q[p(y | x, theta)]``, averaged over ``num_samples`` draws.

        See :func:`predictive_probs`; ``masks`` (keep masks by parameter name) zero the same
        weights in every draw.
        """
        names = [name for name in self.module.site_values() if name not in self.module.hyper_support]
        return predictive_probs(self.module, self.sample(num_samples, seed, sites=names), x, masks)

    def _parts(self) -> list[nn.Module]:
        return list(self.guide) if isinstance(self.guide, AutoGuideList) else [self.guide]


def constrained_moments(loc: Tensor, scale: Tensor, transform: Transform) -> tuple[Tensor, Tensor]:
    """Mean and sd of ``T(U)``, ``U ~ Normal(loc, scale)``, in closed form.

    ``T`` may be a composition of affine maps and one ``exp`` (that is ``biject_to`` of the real
    line and of ``positive``/``greater_than``): affine maps move mean and sd exactly, and
    ``exp`` gives the lognormal moments ``mean = exp(m + s^2/2)``, ``sd = mean * sqrt(exp(s^2) - 1)``.
    """
    mean, sd, gaussian = loc, scale, True
    for part in _elementary(transform):
        if isinstance(part, AffineTransform):
            mean, sd = part.loc + part.scale * mean, abs(part.scale) * sd
        elif isinstance(part, ExpTransform) and gaussian:
            mean = torch.exp(mean + sd.pow(2) / 2)
            sd = mean * torch.expm1(sd.pow(2)).sqrt()
            gaussian = False
        else:
            raise ConfigError(f"no closed-form moments through {transform}")
    return mean, sd


def _elementary(transform: Transform) -> list[Transform]:
    """The elementary transforms of ``transform``, unwrapping compositions and ``IndependentTransform``."""
    if isinstance(transform, IndependentTransform):
        return _elementary(transform.base_transform)
    if isinstance(transform, ComposeTransform):
        return [leaf for part in transform.parts for leaf in _elementary(part)]
    return [transform]


def mean_prediction(likelihood: Likelihood, out: Tensor) -> Tensor:
    """``E[y | out]``: class probabilities (Categorical, also per position of a sequence), ``P(y = 1)``
    (Bernoulli), or the mean."""
    distribution = likelihood.distribution(out)
    if isinstance(distribution, dist.Independent):  # a sequence: the per-position distribution
        distribution = distribution.base_dist
    if isinstance(distribution, (dist.Categorical, dist.Bernoulli)):
        return distribution.probs
    return distribution.mean


@torch.no_grad()
def predictive_probs(module: BayesianModule, draws: Mapping[str, Tensor], x: Tensor,
                     masks: Mapping[str, Tensor] | None = None) -> Tensor:
    """``(1/S) sum_s E[y | x, theta_s]`` over draws ``{site: (S, *shape)}`` of the latent sites.

    Works for any source of draws (SVI, NUTS); a grouping's draws are scattered into its member
    tensors and hyper-variables are ignored.  ``masks`` multiply the named parameters of every
    draw (pruning the same weights throughout).
    """
    network = module.network_values(draws)
    names = [name for name, _ in module.net.named_parameters()]
    masks = masks or {}
    total = None
    num_samples = len(network[names[0]])
    for s in range(num_samples):
        params = {name: network[name][s] * masks[name] if name in masks else network[name][s] for name in names}
        out = torch.func.functional_call(module.net, params, (x,))
        probs = mean_prediction(module.likelihood, out)
        total = probs if total is None else total + probs
    return total / num_samples


class SVIStep:
    """One Adam step on ``-ELBO``: ``step(x, y)`` returns the loss before the step.

    ``loss_fn(x, y)`` estimates ``-ELBO`` on a batch for ``guide``.  Raises DivergenceError on a
    non-finite loss, before the parameters move.
    """

    def __init__(self, guide: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], lr: float) -> None:
        self.guide, self.loss_fn, self.lr = guide, loss_fn, lr
        self.optimizer = _adam(list(guide.parameters()), lr)
        self.steps = 0

    def __call__(self, x: Tensor, y: Tensor) -> float:
        self.optimizer.zero_grad()
        loss = self.loss_fn(x, y)
        if not torch.isfinite(loss):
            raise DivergenceError(f"SVI -ELBO became {loss.item()} at step {self.steps}; "
                                  f"lower lr (now {self.lr}) or init_scale")
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return loss.item()


def svi_step_function(module: BayesianModule, lr: float = 1e-3, init_scale: float = 1e-3,
                      num_particles: int = 1) -> SVIStep:
    """A training step of the fast engine (:class:`MeanFieldGaussian`) started at the module's values.

    ``num_particles`` draws average each step's estimate.
    """
    q = MeanFieldGaussian(module, init_scale)

    def loss_fn(x: Tensor, y: Tensor) -> Tensor:
        return sum(q.neg_elbo(x, y) for _ in range(num_particles)) / num_particles
    return SVIStep(q, loss_fn, lr)


def fit_svi(module: BayesianModule, x: Tensor, y: Tensor, epochs: int, batch_size: int = 100,
            lr: float = 1e-3, guide: Guide = "normal", init_scale: float = 1e-3, num_particles: int = 1,
            seed: int = 0, progress: bool = True, engine: Engine | None = None, rank: int = 10) -> SVIResult:
    """Fit ``q`` to ``module``'s posterior by SVI, starting at the module's current (MAP) values.

    Every scale starts at ``init_scale`` (unconstrained space).  ``engine`` defaults to
    ``"fast"`` for ``guide="normal"`` and must be ``"pyro"`` for ``guide="lowrank"`` (of rank
    ``rank`` over the hyper-variables).  ``num_particles`` draws average each step's estimate.
    Raises DivergenceError on a non-finite ELBO.
    """
    engine = engine or ("pyro" if guide == "lowrank" else "fast")
    _check_args(module, epochs, batch_size, lr, guide, engine, num_particles, rank)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    losses: list[float] = []
    epoch_losses: list[float] = []
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(seed)
        if engine == "fast":
            step = svi_step_function(module, lr, init_scale, num_particles)
        else:
            q = _pyro_guide(module, guide, init_scale, rank)
            q(x[:1], y[:1])
            elbo = Trace_ELBO(num_particles=num_particles, max_plate_nesting=1)
            step = SVIStep(q, lambda xb, yb: elbo.differentiable_loss(module.model, q, xb, yb), lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(step.optimizer, T_max=epochs * steps_per_epoch)
        with tqdm(total=epochs * steps_per_epoch, desc=f"SVI ({engine}, {guide})", disable=not progress) as bar:
            for _ in range(epochs):
                for xb, yb in iterate_minibatches(x, y, batch_size, generator):
                    losses.append(step(xb, yb))
                    schedule.step()
                    bar.update()
                epoch_losses.append(sum(losses[-steps_per_epoch:]) / steps_per_epoch)
                bar.set_postfix(loss=f"{epoch_losses[-1]:.4g}")
    return SVIResult(guide=step.guide, module=module, losses=losses, epoch_losses=epoch_losses)


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch supports it (on CPU since torch 2.4)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr)


def _check_args(module: BayesianModule, epochs: int, batch_size: int, lr: float, guide: str, engine: str,
                num_particles: int, rank: int) -> None:
    if epochs < 1 or batch_size < 1 or num_particles < 1 or rank < 1 or not lr > 0:
        raise ConfigError(f"need epochs, batch_size, num_particles, rank >= 1 and lr > 0; got epochs={epochs}, "
                          f"batch_size={batch_size}, num_particles={num_particles}, rank={rank}, lr={lr}")
    if guide not in ("normal", "lowrank"):
        raise ConfigError(f"unknown guide {guide!r}: choose 'normal' or 'lowrank'")
    if engine not in ("fast", "pyro"):
        raise ConfigError(f"unknown SVI engine {engine!r}: choose 'fast' or 'pyro'")
    if guide == "lowrank" and engine == "fast":
        raise ConfigError("the lowrank guide needs engine='pyro'")
    if guide == "lowrank" and not module.hyper_values():
        raise ConfigError(f"the lowrank guide covers the prior's hyper-variables and {module.prior!r} has none; "
                          "use guide='normal'")


def _pyro_guide(module: BayesianModule, guide: Guide, init_scale: float, rank: int) -> nn.Module:
    """``AutoNormal`` over every site, or ``AutoNormal`` (network) + low-rank MVN (hyper-variables)."""
    init = init_to_value(values=module.site_values())
    if guide == "normal":
        return AutoNormal(module.model, init_loc_fn=init, init_scale=init_scale)
    hyper = list(module.hyper_values())
    model = InitMessenger(init)(module.model)  # hidden sites too need values (ImproperUniform cannot sample)
    guides = AutoGuideList(model)
    guides.append(AutoNormal(poutine.block(model, hide=hyper), init_loc_fn=init, init_scale=init_scale))
    guides.append(AutoLowRankMultivariateNormal(poutine.block(model, expose=hyper), init_loc_fn=init,
                                                init_scale=init_scale, rank=rank))
    return guides


def _marginals(part: nn.Module) -> dict[str, Marginal]:
    """Unconstrained marginals of a :class:`MeanFieldGaussian`, ``AutoNormal`` or ``AutoLowRankMultivariateNormal``.

    For the low-rank guide the marginal sd is ``sqrt(diag(W W^T + D))`` (Pyro's ``_loc_scale``).
    """
    if isinstance(part, MeanFieldGaussian):
        return part.marginals()
    if isinstance(part, AutoNormal):
        return {name: Marginal(*(v.detach() for v in part._get_loc_and_scale(name)), biject_to(site["fn"].support))
                for name, site in part.prototype_trace.iter_stochastic_nodes()}
    loc, scale = (v.detach() for v in part._loc_scale())
    pairs = zip(part._unpack_latent(loc), part._unpack_latent(scale))
    return {site["name"]: Marginal(m, s, biject_to(site["fn"].support)) for (site, m), (_, s) in pairs}
