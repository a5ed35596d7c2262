"""NUTS (Pyro's kernel) on the posterior of a *small* BayesianModule: the reference for MAP and SVI.

Chains run one after another, chain ``c`` seeded with ``seed + c``; only post-warmup draws are kept.

The potential.  NUTS explores unconstrained latents ``u``: every network parameter, and every
hyper-variable ``h = T(u_h)`` with ``T = biject_to(support)`` (as Pyro does).  Rather than tracing
``module.model`` at every leapfrog step (several times slower on models this small), the
potential is evaluated in plain torch from the identity ``-log p(y, theta, h) = N * mean_nll +
N * R(w, h) + const`` (:mod:`bayes_halo.priors.base`)::

    U(u) = N * mean_nll(f(x; theta), y) + N * R(w, h) - log|dT/du_h| - sum_j log scale_j(h),

the last term only for non-centred sites.  The tests check that ``U`` equals the potential Pyro
builds from ``module.model`` up to a constant, for every prior, centred and non-centred.

Non-centred parametrisation (``noncentred=True``, the default): every prior site whose scale
depends on hyper-variables, ``w ~ D(loc(h), scale(h))`` (Laplace or Normal given ``h``), is sampled
as ``z ~ D(0, 1)``, ``w = loc(h) + scale(h) * z`` (what Pyro's ``LocScaleReparam(0)`` does; the
latent is named ``"<site>_decentered"``; ``loc`` and ``scale`` are read off the prior's own Pyro
fragment).  Under HALO (``scale = lambda^2 / (N xi)``) and the horseshoe (``scale = tau lambda``) the
centred posterior is a funnel: near-zero weights force steps of size ``scale`` while the rest of the
posterior wants steps of size ``sd(w | y)``, and NUTS runs to its maximum tree depth.  Priors with
fixed scales (ridge, Laplace, adaptive Laplace) gain nothing and stay centred.  Draws are always
returned for ``w`` itself.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.infer.mcmc.util import initialize_model
from pyro.infer.reparam import LocScaleReparam
from torch import Tensor
from torch.distributions import Independent, Transform, biject_to

from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from .map import fit_map

#: NUTS is refused above this many latent dimensions (use SVI)
MAX_LATENT_DIMS = 20_000

Init = Literal["map", "prior-median"] | Mapping[str, Tensor]


@dataclass
class NUTSResult:
    """Post-warmup NUTS draws and sampler statistics.

    ``draws[site]`` has shape ``(chains, draws, *site_shape)`` (constrained values);
    ``diverging`` is a boolean ``(chains, draws)``; ``step_size``, ``accept_rate`` (mean
    acceptance probability while sampling) and ``seconds`` (wall time) have one entry per chain.
    """

    draws: dict[str, Tensor]
    diverging: Tensor
    step_size: Tensor
    accept_rate: Tensor
    seconds: Tensor

    @property
    def num_divergences(self) -> int:
        """Divergent post-warmup transitions, all chains together."""
        return int(self.diverging.sum())

    def flat(self) -> dict[str, Tensor]:
        """Draws with the chains concatenated: ``(chains * draws, *site_shape)``."""
        return {name: d.reshape(-1, *d.shape[2:]) for name, d in self.draws.items()}


def latent_dims(module: BayesianModule) -> int:
    """Number of scalar latent variables of ``module.model`` (weights, biases, hyper-variables)."""
    return sum(v.numel() for v in module.site_values().values())


def decentred_name(site: str) -> str:
    """Name of the standardised latent ``z`` of a non-centred site (as ``LocScaleReparam`` names it)."""
    return f"{site}_decentered"


def hierarchical_sites(module: BayesianModule) -> list[str]:
    """Prior sites whose scale depends on hyper-variables (the ones worth non-centring)."""
    return [site for site in module.sites if module.hyper(site)]


class Potential:
    """``U(u)`` of the module's posterior over unconstrained latents ``u`` (see the module docstring).

    ``noncentred`` lists the prior sites sampled as ``z``.  :meth:`constrain` maps latents to
    site values; calling the object gives ``U`` (a scalar tensor, differentiable).
    """

    def __init__(self, module: BayesianModule, x: Tensor, y: Tensor, noncentred: list[str]) -> None:
        self.module, self.x, self.y, self.noncentred = module, x, y, noncentred
        self.transforms: dict[str, Transform] = {name: biject_to(support)
                                                 for name, support in module.hyper_support.items()}
        self.like = {site: w.detach() for site, w in module.weights().items()}
        self.parameters = [name for name, _ in module.net.named_parameters()]

    def loc_scale(self, site: str, values: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``loc(h)`` and ``scale(h)`` of ``w | h`` at ``site``, read off the prior's Pyro fragment."""
        data = {name: values[name] for name in self.module.hyper_names[site].values()}
        prior = poutine.condition(self.module.prior.sample, data=data)
        fn = poutine.trace(prior).get_trace(site, self.like[site], self.module.n_data).nodes[site]["fn"]
        while isinstance(fn, Independent):
            fn = fn.base_dist
        return fn.loc, fn.scale

    def constrain(self, latents: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Site values (``w``, not ``z``) and ``log|d(values)/du|`` summed."""
        values: dict[str, Tensor] = {}
        log_det = self.x.new_zeros(())
        for name, transform in self.transforms.items():
            values[name] = transform(latents[name])
            log_det = log_det + transform.log_abs_det_jacobian(latents[name], values[name]).sum()
        for name in self.parameters:
            if name in self.noncentred:
                z = latents[decentred_name(name)]
                loc, scale = self.loc_scale(name, values)
                values[name] = loc + scale * z
                log_det = log_det + scale.log().expand(z.shape).sum()
            else:
                values[name] = latents[name]
        return values, log_det

    def __call__(self, latents: Mapping[str, Tensor]) -> Tensor:
        module, n = self.module, self.module.n_data
        values, log_det = self.constrain(latents)
        out = torch.func.functional_call(module.net, {name: values[name] for name in self.parameters}, (self.x,))
        energy = n * module.likelihood.mean_nll(out, self.y)
        for site, names in self.module.hyper_names.items():
            hyper = {key: values[name] for key, name in names.items()}
            energy = energy + n * module.prior.penalty(site, values[site], hyper, n)
        return energy - log_det


def noncentred_model(module: BayesianModule, model: Callable | None = None) -> Callable:
    """``model`` (default ``module.model``) with every hierarchical prior site non-centred (Pyro reparam)."""
    config = {site: LocScaleReparam(0.0) for site in hierarchical_sites(module)}
    return poutine.reparam(model or module.model, config=config)


def _start_values(module: BayesianModule, x: Tensor, y: Tensor, init: Init) -> dict[str, Tensor]:
    """Constrained starting values of centred sites; sites left out start at their prior median."""
    if isinstance(init, Mapping):
        return {name: torch.as_tensor(v) for name, v in init.items()}
    if init == "prior-median":  # flat sites (no prior median) start at the module's values
        with_prior = set(module.sites) | set(module.hyper_values())
        return {name: v for name, v in module.site_values().items() if name not in with_prior}
    if init != "map":
        raise ConfigError(f"init must be 'map', 'prior-median' or a dict of site values, got {init!r}")
    if module.prior is not None and module.prior.map_is_degenerate:
        raise ConfigError(f"the {module.prior.name} prior has a degenerate MAP: use init='prior-median'")
    return fit_map(copy.deepcopy(module), x, y).values


def _to_noncentred(module: BayesianModule, values: Mapping[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Map centred site values to the non-centred model's sites: ``z = (w - loc) / scale(h)``.

    A weight's ``h`` must be among ``values`` whenever the weight is.
    """
    sites = [site for site in hierarchical_sites(module) if site in values]
    nodes = poutine.trace(noncentred_model(module, poutine.condition(module.model, data=dict(values)))).get_trace(
        x[:1], y[:1]).nodes
    out = {name: v for name, v in values.items() if name not in sites}
    out.update({decentred_name(site): nodes[decentred_name(site)]["value"].detach() for site in sites})
    return out


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads (``None``: unchanged), restoring them afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_nuts(module: BayesianModule, x: Tensor, y: Tensor, num_samples: int = 500, warmup: int = 500,
             num_chains: int = 2, seed: int = 0, init: Init = "prior-median", target_accept_prob: float = 0.9,
             max_tree_depth: int = 10, full_mass: bool = False, noncentred: bool = True,
             num_threads: int | None = 1, progress: bool = True) -> NUTSResult:
    """Draw ``num_samples`` per chain from ``p(theta, h | y)`` by NUTS after ``warmup`` adaptation steps.

    ``init``: ``"prior-median"`` starts every chain at the prior medians (flat sites, e.g. biases,
    at the module's current values); ``"map"`` at a MAP fit (:func:`fit_map` on a copy; the module
    is left unchanged); a dict at those constrained site values.  Under HALO the MAP sits in the
    funnel's neck (``lambda_j -> 0`` where ``w_j = 0``), a poor place to adapt the step size.
    ``full_mass`` adapts a dense mass matrix (worth it for correlated regressions of a few dozen
    dimensions).  ``num_threads`` sets torch's intra-op threads while sampling (``None`` leaves
    them): on models this small one thread is several times faster than two on a busy machine.
    Raises ConfigError above :data:`MAX_LATENT_DIMS` latent dimensions, and for group priors
    (not supported here: use SVI).
    """
    if module.groupings and module.prior is not None:
        raise ConfigError("NUTS does not support group priors yet: use SVI (bayes_halo.inference.svi.fit_svi)")
    dims = latent_dims(module)
    if dims > MAX_LATENT_DIMS:
        raise ConfigError(f"NUTS on {dims} latent dimensions (more than {MAX_LATENT_DIMS}) would take far too "
                          "long: use SVI (bayes_halo.inference.svi.fit_svi) for a model this size")
    if num_samples < 1 or warmup < 1 or num_chains < 1:
        raise ConfigError(f"num_samples, warmup and num_chains must be >= 1, got {num_samples}, {warmup}, {num_chains}")
    if not 0 < target_accept_prob < 1:
        raise ConfigError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
    sites = hierarchical_sites(module) if noncentred else []
    potential = Potential(module, x, y, sites)
    model = noncentred_model(module) if sites else module.model
    chains, diverging, step_size, accept, seconds = [], [], [], [], []
    with _torch_threads(num_threads), pyro.settings.context(module_local_params=True):
        start = _start_values(module, x, y, init)
        strategy = init_to_value(values=_to_noncentred(module, start, x, y) if sites else start,
                                 fallback=init_to_median)
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            initial, *_ = initialize_model(model, (x, y), init_strategy=strategy, max_plate_nesting=1)
            kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept_prob,
                          max_tree_depth=max_tree_depth, full_mass=full_mass)
            last: dict[str, float] = {}  # sampler state after the last draw (the kernel resets after a run)

            def record(kern: NUTS, _params: dict, _stage: str, _i: int) -> None:
                last.update(step_size=float(kern.step_size), accept=float(kern.logging()["acc. prob"]))

            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup, initial_params=initial,
                        disable_progbar=not progress, hook_fn=record)
            tic = time.perf_counter()
            mcmc.run()
            seconds.append(time.perf_counter() - tic)
            latents = mcmc.get_samples()
            with torch.no_grad():
                values = [potential.constrain({k: v[i] for k, v in latents.items()})[0] for i in range(num_samples)]
            chains.append({name: torch.stack([v[name] for v in values]) for name in values[0]})
            flags = torch.zeros(num_samples, dtype=torch.bool)
            flags[list(mcmc.diagnostics()["divergences"]["chain 0"])] = True
            diverging.append(flags)
            accept.append(last["accept"])
            step_size.append(last["step_size"])
    draws = {name: torch.stack([c[name] for c in chains]) for name in chains[0]}
    return NUTSResult(draws, torch.stack(diverging), torch.tensor(step_size), torch.tensor(accept),
                      torch.tensor(seconds))
