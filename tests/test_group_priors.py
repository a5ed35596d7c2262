"""Group priors: Pyro density = N x penalty + const, group HALO's profile, closed-form gradients, zero groups."""
import math

import pytest
import torch
from pyro import poutine
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from bayes_halo.errors import ConfigError
from bayes_halo.priors import (HALO, PRIORS, GroupAdaptiveLaplace, GroupHALO, GroupHorseshoe, GroupLaplace, Laplace,
                               hyper_site_name, trainable_priors)
from bayes_halo.priors.group import RadialLaplace

N = 1000
G, D = 5, 7
SITE = "fc1:inputs"


def all_priors():
    pilot = {SITE: torch.randn(G, D, dtype=torch.float64)}
    return [GroupLaplace(1e-2), GroupAdaptiveLaplace.from_pilot(2e-3, pilot, gamma=1.5), GroupHALO(1e-3, 2e-3),
            GroupHALO(1e-3, 2e-3, size_power=5 / 6), GroupHorseshoe(0.5)]


def prior_id(prior):
    return prior.name + (f"-size{prior.size_power:.2f}" if getattr(prior, "size_power", 0) else "")


def random_point(prior, generator, zero_rows=()):
    w = torch.randn(G, D, generator=generator, dtype=torch.float64) * 2
    w[list(zero_rows)] = 0.0
    hyper = {key: torch.exp(torch.randn(h.init.shape, generator=generator, dtype=torch.float64))
             for key, h in prior.hyper_sites(SITE, w).items()}
    return w, hyper


def pyro_neg_log_prob(prior, w, hyper):
    data = {SITE: w, **{hyper_site_name(SITE, k): v for k, v in hyper.items()}}
    trace = poutine.trace(poutine.condition(prior.sample, data=data)).get_trace(SITE, w, N)
    assert set(data) == {name for name, site in trace.nodes.items() if site["type"] == "sample"}
    return -trace.log_prob_sum()


@pytest.mark.parametrize("prior", all_priors(), ids=prior_id)
def test_pyro_density_is_penalty_times_n_plus_constant(prior, float64):
    generator = torch.Generator().manual_seed(1)
    offsets, magnitudes = [], []
    for _ in range(25):
        w, hyper = random_point(prior, generator)
        inputs = [w.requires_grad_(True), *(v.requires_grad_(True) for v in hyper.values())]
        nlp = pyro_neg_log_prob(prior, w, hyper)
        scaled = N * prior.penalty(SITE, w, hyper, N)
        offsets.append((nlp - scaled).item())
        magnitudes.append(abs(nlp.item()))
        for gp, gq in zip(torch.autograd.grad(nlp, inputs), torch.autograd.grad(scaled, inputs)):
            torch.testing.assert_close(gp, gq, rtol=1e-7, atol=1e-9)
    spread = (max(offsets) - min(offsets)) / max(magnitudes)
    assert spread < 1e-9, f"-log p - N*penalty is not constant: relative spread {spread}"


def test_group_halo_needs_gamma_2d_plus_1(float64):
    """With Gamma(2d) instead of Gamma(2d+1) a log(lambda) survives: the offset moves with lambda."""
    prior = GroupHALO(1e-3, 2e-3)
    w = torch.randn(G, D, dtype=torch.float64)
    offsets = []
    for scale in (0.3, 1.0, 3.0):
        lam = torch.full((G,), scale, dtype=torch.float64)
        gamma = torch.distributions.Gamma(torch.tensor(2.0 * D), torch.tensor(N * 2e-3))
        nlp = -(gamma.log_prob(lam).sum() + RadialLaplace(N * 1e-3 / lam**2, D).log_prob(w).sum())
        offsets.append((nlp - N * prior.penalty(SITE, w, {"lambda": lam}, N)).item())
    assert max(offsets) - min(offsets) == pytest.approx(G * math.log(3.0 / 0.3), rel=1e-9)


def independent_penalty(prior, w, hyper):
    """The penalties written out in plain torch (no shared code with bayes_halo.priors.group)."""
    norms = torch.sqrt((w * w).sum(dim=1))
    if isinstance(prior, GroupHALO):
        lam, scale = hyper["lambda"], D ** prior.size_power
        return scale * prior.xi * (norms / lam**2).sum() + scale * prior.psi * lam.sum()
    if isinstance(prior, GroupAdaptiveLaplace):
        return prior.xi * math.sqrt(D) * (prior.omega[SITE] * norms).sum()
    return prior.xi * math.sqrt(D) * norms.sum()


@pytest.mark.parametrize("prior", all_priors()[:-1], ids=prior_id)
def test_penalty_and_penalty_grad_against_an_independent_formula(prior, float64):
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        w, hyper = random_point(prior, generator)
        inputs = [w.requires_grad_(True), *(v.requires_grad_(True) for v in hyper.values())]
        reference = independent_penalty(prior, w, hyper)
        torch.testing.assert_close(prior.penalty(SITE, w, hyper, N), reference, rtol=1e-13, atol=0)
        expected = torch.autograd.grad(reference, inputs)
        grad_w, grad_h = prior.penalty_grad(SITE, w.detach(), {k: v.detach() for k, v in hyper.items()}, N)
        assert set(grad_h) == set(hyper)
        torch.testing.assert_close(grad_w, expected[0], rtol=1e-12, atol=1e-15)
        for got, want in zip(grad_h.values(), expected[1:]):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("prior", all_priors()[:-1], ids=prior_id)
def test_exactly_zero_groups_get_the_zero_subgradient(prior, float64):
    w, hyper = random_point(prior, torch.Generator().manual_seed(3), zero_rows=(1, 3))
    grad_w, grad_h = prior.penalty_grad(SITE, w, hyper, N)
    assert torch.count_nonzero(grad_w[[1, 3]]) == 0 and torch.isfinite(grad_w).all()
    auto = torch.autograd.grad(prior.penalty(SITE, w.requires_grad_(True), hyper, N), w)[0]
    assert torch.equal(auto, grad_w)  # autograd through the penalty: the same closed form, bit for bit
    # the Pyro density's gradient at a zero group is finite and zero too (vector_norm's subgradient)
    if not prior.hyper_sites(SITE, w):
        pyro_grad = torch.autograd.grad(pyro_neg_log_prob(prior, w, hyper), w)[0]
        assert torch.count_nonzero(pyro_grad[[1, 3]]) == 0
    if isinstance(prior, GroupHALO):
        torch.testing.assert_close(grad_h["lambda"][[1, 3]], torch.full((2,), prior.psi * D ** prior.size_power))


@pytest.mark.parametrize("xi,psi,r,d,power", [(1e-3, 2e-3, 0.7, 4, 0.0), (3e-5, 1e-4, 0.01, 300, 0.0),
                                               (0.2, 0.05, 3.0, 1, 0.0), (1e-3, 2e-3, 0.7, 4, 0.5),
                                               (3e-5, 1e-4, 0.01, 300, 5 / 6)])
def test_group_halo_profile_is_a_cube_root_group_bridge(xi, psi, r, d, power):
    prior = GroupHALO(xi, psi, size_power=power)
    direction = torch.randn(1, d, dtype=torch.float64)
    weight = r * direction / direction.norm()

    def penalty_at(lam):
        return prior.penalty("g", weight, {"lambda": torch.tensor([lam], dtype=torch.float64)}, N).item()

    best = minimize_scalar(penalty_at, bounds=(1e-9, 1e3), method="bounded", options={"xatol": 1e-12})
    assert best.x == pytest.approx((2 * xi * r / psi) ** (1 / 3), rel=1e-4)
    assert best.fun == pytest.approx(d ** power * 3 * 2 ** (-2 / 3) * xi ** (1 / 3) * psi ** (2 / 3) * r ** (1 / 3),
                                     rel=1e-8)


@pytest.mark.parametrize("d", [4, 128, 4096])
def test_size_power_five_sixths_prices_a_group_as_its_weights_under_per_weight_halo(d):
    """``size_power = 5/6``: the profile penalty of ``d`` weights of RMS ``r`` grouped equals that of
    the same ``d`` weights under per-weight HALO (each profiled over its own lambda, numerically)."""
    xi, psi, r = 2e-4, 1e-3, 0.08
    grouped = GroupHALO(xi, psi, size_power=5 / 6)
    weight = torch.full((1, d), r, dtype=torch.float64)  # every entry r: RMS r, ||w|| = sqrt(d) r

    def group_at(lam):
        return grouped.penalty("g", weight, {"lambda": torch.tensor([lam], dtype=torch.float64)}, N).item()

    def single_at(lam):
        return HALO(xi, psi).penalty("w", weight[:, :1], {"lambda": torch.tensor([[lam]], dtype=torch.float64)},
                                     N).item()

    best = dict(bounds=(1e-9, 1e3), method="bounded", options={"xatol": 1e-12})
    group = minimize_scalar(group_at, **best).fun
    per_weight = d * minimize_scalar(single_at, **best).fun
    assert group == pytest.approx(per_weight, rel=1e-7)
    # without the scaling the group is far cheaper than its weights: d^(1/6) against d
    assert GroupHALO(xi, psi).penalty("g", weight, {"lambda": torch.tensor([1.0], dtype=torch.float64)}, N) < (
        group_at(1.0))


def test_group_laplace_with_one_entry_per_group_is_the_lasso(float64):
    w = torch.randn(6, 1)
    assert GroupLaplace(0.3).penalty("g", w, {}, N).item() == pytest.approx(
        Laplace(0.3).penalty("w", w, {}, N).item(), rel=1e-14)


@pytest.mark.parametrize("d", [1, 3])
def test_radial_laplace_is_normalised_and_samples_its_radius(d, float64):
    rate = torch.tensor(2.5)
    law = RadialLaplace(rate, d)
    # integrate the density over R^d in spherical shells: surface area 2 pi^(d/2) / Gamma(d/2)
    shell = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
    mass = quad(lambda r: shell * r ** (d - 1) * math.exp(law.log_prob(torch.tensor([r] + [0.0] * (d - 1))).item()),
                0, math.inf)[0]
    assert mass == pytest.approx(1.0, rel=1e-9)
    radii = law.expand(torch.Size([40_000])).sample().norm(dim=-1)
    assert radii.mean().item() == pytest.approx(d / 2.5, rel=0.02)  # Gamma(d, rate): mean d / rate


def test_registry_and_validation():
    assert PRIORS["group-halo"] is GroupHALO and PRIORS["group-horseshoe"] is GroupHorseshoe
    assert "group-horseshoe" not in trainable_priors() and "group-halo" in trainable_priors()
    with pytest.raises(ConfigError, match="no pilot estimate"):
        GroupAdaptiveLaplace.from_pilot(1e-3, {"a": torch.ones(2, 2)}).penalty("b", torch.ones(2, 2), {}, N)
    with pytest.raises(ConfigError, match="positive"):
        GroupHALO(1e-3, 0.0)
    with pytest.raises(ConfigError, match="size_power must be a finite non-negative"):
        GroupHALO(1e-3, 1e-3, size_power=-0.5)
