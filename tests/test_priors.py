"""Each prior's Pyro density against its closed-form penalty, and HALO's defining properties."""
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from scipy.optimize import minimize_scalar

from bayes_halo.errors import ConfigError
from bayes_halo.priors import (HALO, PRIORS, AdaptiveLaplace, Horseshoe, Laplace, Normal,
                               RegularizedHorseshoe, SharedHALO, hyper_site_name)

N = 1000
SHAPE = (3, 4)
SITE = "layer.weight"


def all_priors():
    pilot = {SITE: torch.randn(SHAPE, dtype=torch.float64)}
    return [Normal(0.3), Laplace(1e-2), AdaptiveLaplace.from_pilot(2e-3, pilot, gamma=1.5),
            HALO(1e-3, 2e-3), HALO(1e-3, 2e-3, concentration=1.0), HALO(1e-3, 2e-3, lambda_decay=0.3),
            HALO(1e-3, 2e-3, concentration=2.0, lambda_decay=1e-2), SharedHALO(1e-3, 5e-3),
            Horseshoe(0.5), RegularizedHorseshoe(0.5, slab_scale=1.5, slab_df=3.0)]


def random_point(prior, generator):
    """A random weight and random hyper-variables inside their supports."""
    w = torch.randn(SHAPE, generator=generator, dtype=torch.float64) * 2
    hyper = {key: torch.exp(torch.randn(h.init.shape, generator=generator, dtype=torch.float64))
             for key, h in prior.hyper_sites(SITE, w).items()}
    return w, hyper


def pyro_neg_log_prob(prior, w, hyper):
    """-log p(w, h) read off a Pyro trace of the prior's fragment, conditioned on the point."""
    data = {SITE: w, **{hyper_site_name(SITE, k): v for k, v in hyper.items()}}
    trace = poutine.trace(poutine.condition(prior.sample, data=data)).get_trace(SITE, w, N)
    assert set(data) == {name for name, site in trace.nodes.items() if site["type"] == "sample"}
    return -trace.log_prob_sum()


def prior_id(prior):
    return f"{prior.name}-{getattr(prior, 'concentration', '')}-{getattr(prior, 'lambda_decay', '')}"


@pytest.mark.parametrize("prior", all_priors(), ids=prior_id)
def test_pyro_density_is_penalty_times_n_plus_constant(prior, float64):
    generator = torch.Generator().manual_seed(1)
    offsets, magnitudes = [], []
    for _ in range(25):
        w, hyper = random_point(prior, generator)
        w.requires_grad_(True)
        for v in hyper.values():
            v.requires_grad_(True)
        nlp = pyro_neg_log_prob(prior, w, hyper)
        scaled = N * prior.penalty(SITE, w, hyper, N)
        offsets.append((nlp - scaled).item())
        magnitudes.append(abs(nlp.item()))
        inputs = [w, *hyper.values()]
        grads_pyro = torch.autograd.grad(nlp, inputs)
        grads_penalty = torch.autograd.grad(scaled, inputs)
        for gp, gq in zip(grads_pyro, grads_penalty):
            torch.testing.assert_close(gp, gq, rtol=1e-7, atol=1e-9)
    spread = (max(offsets) - min(offsets)) / max(magnitudes)
    assert spread < 1e-5, f"-log p - N*penalty is not constant: relative spread {spread}"


@pytest.mark.parametrize("prior", all_priors(), ids=prior_id)
def test_penalty_grad_is_the_autograd_gradient_of_the_penalty(prior, float64):
    """The closed forms the fused optimiser uses, against autograd through ``penalty``."""
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        w, hyper = random_point(prior, generator)
        inputs = [w.requires_grad_(True), *(v.requires_grad_(True) for v in hyper.values())]
        expected = torch.autograd.grad(prior.penalty(SITE, w, hyper, N), inputs)
        grad_w, grad_h = prior.penalty_grad(SITE, w.detach(), {k: v.detach() for k, v in hyper.items()}, N)
        assert set(grad_h) == set(hyper)
        torch.testing.assert_close(grad_w, expected[0], rtol=1e-12, atol=1e-15)
        for got, want in zip(grad_h.values(), expected[1:]):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_halo_lambda_decay_is_half_decay_times_lambda_squared():
    w, lam = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 0.5])
    plain = HALO(1e-3, 2e-3).penalty("w", w, {"lambda": lam}, N)
    decayed = HALO(1e-3, 2e-3, lambda_decay=0.1).penalty("w", w, {"lambda": lam}, N)
    assert (decayed - plain).item() == pytest.approx(0.05 * (1.0 + 0.25), rel=1e-6)
    with pytest.raises(ConfigError, match="lambda_decay"):
        HALO(1e-3, 2e-3, lambda_decay=-1.0)


@pytest.mark.parametrize("rate,decay", [(2.0, 0.5), (0.05, 30.0)])  # one regime per rejection proposal
def test_gamma_gaussian_samples_follow_its_density(rate, decay, float64):
    """Sample moments against ``int lambda^k p(lambda)`` by quadrature of the unnormalised density."""
    from scipy.integrate import quad

    from bayes_halo.priors.halo import GammaGaussian
    law = GammaGaussian(torch.tensor(3.0), torch.tensor(rate), torch.tensor(decay))

    def density(x):
        return float(law.log_prob(torch.tensor(x)).exp())

    mass = quad(density, 0, float("inf"))[0]
    mean = quad(lambda x: x * density(x), 0, float("inf"))[0] / mass
    sd = (quad(lambda x: x * x * density(x), 0, float("inf"))[0] / mass - mean**2) ** 0.5
    draws = law.expand(torch.Size([40_000])).sample()
    assert (draws > 0).all()
    assert abs(draws.mean().item() - mean) < 4 * sd / 200  # 4 standard errors
    assert draws.std().item() == pytest.approx(sd, rel=0.03)


def test_halo_penalty_is_the_papers():
    w = torch.tensor([0.5, -2.0, 0.0])
    lam = torch.tensor([1.0, 0.5, 2.0])
    expected = 1e-3 * (0.5 / 1.0 + 2.0 / 0.25 + 0.0) + 2e-3 * (1.0 + 0.5 + 2.0)
    got = HALO(1e-3, 2e-3).penalty("w", w, {"lambda": lam}, N)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("xi,psi,w", [(1e-3, 2e-3, 0.7), (3e-5, 1e-4, 0.01), (0.2, 0.05, 3.0)])
def test_halo_profile_is_a_cube_root_bridge_penalty(xi, psi, w):
    prior = HALO(xi, psi)
    weight = torch.tensor([w], dtype=torch.float64)

    def penalty_at(lam):
        return prior.penalty("w", weight, {"lambda": torch.tensor([lam], dtype=torch.float64)}, N).item()

    best = minimize_scalar(penalty_at, bounds=(1e-9, 1e3), method="bounded",
                           options={"xatol": 1e-12})
    assert best.x == pytest.approx((2 * xi * w / psi) ** (1 / 3), rel=1e-4)
    closed_form = 3 * 2 ** (-2 / 3) * xi ** (1 / 3) * psi ** (2 / 3) * w ** (1 / 3)
    assert best.fun == pytest.approx(closed_form, rel=1e-8)


def test_adaptive_laplace_weights_follow_zou():
    pilot = {"w": torch.tensor([2.0, 0.5, 0.0])}
    prior = AdaptiveLaplace.from_pilot(0.1, pilot, gamma=2.0, eps=1e-3)
    expected = (torch.tensor([2.0, 0.5, 0.0]) + 1e-3) ** -2.0
    torch.testing.assert_close(prior.omega["w"], expected)
    w = torch.tensor([1.0, -1.0, 0.5])
    assert prior.penalty("w", w, {}, N).item() == pytest.approx(0.1 * float((expected * w.abs()).sum()), rel=1e-6)
    with pytest.raises(ConfigError, match="no pilot estimate"):
        prior.penalty("other", w, {}, N)


@pytest.mark.parametrize("make", [lambda: Laplace(-1.0), lambda: HALO(1e-3, 0.0), lambda: Normal(float("nan")),
                                  lambda: SharedHALO(1e-3, -2.0), lambda: Horseshoe(0.0)])
def test_invalid_strengths_are_refused(make):
    with pytest.raises(ConfigError, match="must be a finite positive number"):
        make()


def test_registry_names_every_prior():
    assert PRIORS["halo"] is HALO and PRIORS["none"] is None
    assert {cls.name for cls in PRIORS.values() if cls is not None} == set(PRIORS) - {"none"}


def test_shared_halo_sampling_lambda_squared_would_leave_a_stray_log():
    """The square-root site is what makes the MAP objective exact (halo-math.md)."""
    P, xi, psi = 12, 1e-3, 5e-3
    w = torch.randn(P, dtype=torch.float64)
    offsets_direct, offsets_sqrt = [], []
    prior = SharedHALO(xi, psi)
    for lam in (0.3, 1.0, 4.0):
        lam_t = torch.tensor(lam, dtype=torch.float64)
        penalty = N * prior.penalty("w", w, {"lambda": lam_t}, N)
        offsets_sqrt.append((pyro_direct_or_sqrt(w, lam_t, xi, psi, sqrt=True) - penalty).item())
        offsets_direct.append((pyro_direct_or_sqrt(w, lam_t, xi, psi, sqrt=False) - penalty).item())
    assert max(offsets_sqrt) - min(offsets_sqrt) < 1e-8
    assert max(offsets_direct) - min(offsets_direct) > 1.0  # differs by log(lambda)


def pyro_direct_or_sqrt(w, lam, xi, psi, sqrt):
    """-log p(w, lambda) with the sample site at lambda (sqrt=True) or at lambda^2."""
    gamma = dist.Gamma(torch.tensor(w.numel() + 0.5, dtype=w.dtype), torch.tensor(N * psi, dtype=w.dtype))
    laplace = dist.Laplace(0.0, lam**2 / (N * xi)).expand(w.shape)
    if sqrt:
        lam_lp = dist.TransformedDistribution(gamma, [torch.distributions.transforms.PowerTransform(
            torch.tensor(0.5, dtype=w.dtype))]).log_prob(lam)
    else:
        lam_lp = gamma.log_prob(lam**2)
    return -(lam_lp + laplace.log_prob(w).sum())


def test_prior_fragment_samples_are_in_support():
    like = torch.zeros(50, 40)
    for prior in (HALO(1e-3, 1e-3), HALO(1e-3, 1e-3, lambda_decay=1e-4), SharedHALO(1e-3, 1e-3),
                  RegularizedHorseshoe(0.1)):
        trace = poutine.trace(prior.sample).get_trace("w", like, N)
        assert trace.nodes["w"]["value"].shape == like.shape
        assert (trace.nodes["w_lambda"]["value"] > 0).all()
