"""The own-loop API: attach, prior_gradients/add_prior_grad_, the prior step in any optimiser, prune, export, save/load.

Each number is checked against a second computation: autograd through ``penalty``, PriorSGD,
a hand-written AdamW step followed by the closed-form soft threshold.
"""
import copy

import pytest
import torch
from torch import nn

import bayes_halo
from bayes_halo.errors import ConfigError
from bayes_halo.priors import HALO, Laplace, Normal
from tiny_models import make_prior, small_net

N, B = 200, 32


def randomized(name="halo", positivity="abs", seed=7):
    generator = torch.Generator().manual_seed(seed)
    net = small_net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
        net[0].weight[:, :2] = 0.0  # exact zeros: subgradient 0
    model = bayes_halo.attach(net, make_prior(name, net), N, positivity=positivity)
    with torch.no_grad():
        for r in model.hyper_parameters():
            r.mul_(torch.exp(0.5 * torch.randn(r.shape, generator=generator, dtype=r.dtype)))
    return model


def batches(seed=1, n=3):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, 6, generator=generator), torch.randint(0, 3, (B,), generator=generator))
            for _ in range(n)]


@pytest.mark.parametrize("positivity", ["abs", "exp"])
@pytest.mark.parametrize("name", ["ridge", "laplace", "adaptive-laplace", "halo", "halo-decay", "shared-halo"])
def test_prior_gradients_are_autograd_of_the_penalty(name, positivity, float64):
    model = randomized(name, positivity)
    params = [p for p, _ in model.prior_gradients()]
    expected = torch.autograd.grad(model.penalty(), params)  # autograd: the subgradient of |w| at 0 is 0
    for (param, grad), reference in zip(model.prior_gradients(), expected):
        torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-14)
    assert torch.count_nonzero(model.prior_gradients()[0][1][:, :2]) == 0


@pytest.mark.parametrize("name", ["laplace", "halo", "shared-halo"])
def test_add_prior_grad_with_torch_sgd_steps_as_prior_sgd(name, float64):
    """add_prior_grad_() + torch.optim.SGD, and attach_optimizer(SGD) (auto: coupled), == PriorSGD."""
    lr, hyper_lr, momentum, wd = 0.05, 0.03, 0.9, 1e-3
    fused, manual, hooked = randomized(name), randomized(name), randomized(name)
    optimizers = [bayes_halo.PriorSGD(fused, lr, momentum, wd, hyper_lr),
                  torch.optim.SGD([{"params": list(manual.network_parameters()), "weight_decay": wd},
                                   {"params": list(manual.hyper_parameters()), "lr": hyper_lr}], lr=lr,
                                  momentum=momentum),
                  torch.optim.SGD(hooked.net.parameters(), lr=lr, momentum=momentum, weight_decay=wd)]
    step = hooked.attach_optimizer(optimizers[2], hyper_lr=hyper_lr)
    assert step.method == "coupled"
    for x, y in batches():
        for model, optimizer in zip((fused, manual, hooked), optimizers):
            optimizer.zero_grad()
            model.likelihood.mean_nll(model(x), y).backward()
            if model is manual:
                model.add_prior_grad_()
            optimizer.step()
    for model in (manual, hooked):
        for site, value in fused.site_values().items():
            torch.testing.assert_close(model.site_values()[site], value, rtol=1e-12, atol=1e-14)


def adamw_reference(model, x, y, lr, hyper_grads=True, before=None):
    """One torch AdamW step on the likelihood and dR/dr on the raw hyper-variables (by autograd, at the
    weights before ``before(weights, their dR/dw)`` changes them)."""
    optimizer = torch.optim.AdamW([{"params": list(model.network_parameters())},
                                   {"params": list(model.hyper_parameters()), "weight_decay": 0.0}], lr=lr)
    model.likelihood.mean_nll(model(x), y).backward()
    raws, weights = list(model.hyper_parameters()), list(model.weights().values())
    grads = torch.autograd.grad(model.penalty(), raws + weights)
    if hyper_grads:
        for raw, grad in zip(raws, grads):
            raw.grad = grad
    if before is not None:
        with torch.no_grad():
            before(weights, grads[len(raws):])
    optimizer.step()


@pytest.mark.parametrize("hyper", ["optimizer", "profile"])
def test_proximal_step_is_adamw_then_soft_thresholding(hyper, float64):
    """proximal: AdamW on the likelihood, then w <- sign(w) max(|w| - lr xi / lambda^2, 0) (profile: lambda = lambda*(w))."""
    xi, psi, lr = 0.01, 0.02, 0.05
    model = randomized()
    model.prior = HALO(xi, psi)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=lr)
    model.attach_optimizer(optimizer, method="proximal", hyper=hyper)
    x, y = batches(n=1)[0]
    model.likelihood.mean_nll(model(x), y).backward()
    optimizer.step()
    adamw_reference(reference, x, y, lr, hyper_grads=hyper == "optimizer")
    for site in reference.sites:
        w = reference.weights()[site].detach()
        lam = (2 * xi * w.abs() / psi) ** (1 / 3) if hyper == "profile" else reference.hyper(site)["lambda"].detach()
        expected = w.sign() * (w.abs() - lr * xi / lam**2).clamp(min=0)
        torch.testing.assert_close(model.weights()[site].detach(), expected, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(model.hyper(site)["lambda"].detach(), lam, rtol=1e-12, atol=1e-14)


def test_decoupled_step_moves_w_by_lr_times_the_prior_gradient_outside_adam(float64):
    lr = 0.05
    model = randomized()
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=lr)
    model.attach_optimizer(optimizer, method="decoupled")
    x, y = batches(n=1)[0]
    model.likelihood.mean_nll(model(x), y).backward()
    optimizer.step()

    def decoupled(weights, grads):  # as AdamW's decay: before the adaptive step
        for w, g in zip(weights, grads):
            w.sub_(lr * g)
    adamw_reference(reference, x, y, lr, before=decoupled)
    for site, value in reference.site_values().items():
        torch.testing.assert_close(model.site_values()[site], value, rtol=1e-12, atol=1e-14)


def test_layers_by_type_name_predicate_and_per_layer_strengths(float64):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    prior = Laplace(0.01)
    assert bayes_halo.attach(net, prior, N).sites == ("0.weight", "2.weight", "4.weight")
    assert bayes_halo.attach(net, prior, N, layers=nn.Conv2d).sites == ("0.weight",)
    assert bayes_halo.attach(net, prior, N, layers=["2", "4"]).sites == ("2.weight", "4.weight")
    assert bayes_halo.attach(net, prior, N, layers=lambda name, m: getattr(m, "out_features", 0) == 4).sites == ("2.weight",)
    model = bayes_halo.attach(net, prior, N, per_layer={"4": Laplace(0.5)})
    by_hand = 0.01 * (net[0].weight.abs().sum() + net[2].weight.abs().sum()) + 0.5 * net[4].weight.abs().sum()
    torch.testing.assert_close(model.penalty(), by_hand)
    with pytest.raises(ConfigError, match="unknown layer"):
        bayes_halo.attach(net, prior, N, layers=["fc9"])
    with pytest.raises(ConfigError, match="strengths only"):
        bayes_halo.attach(net, prior, N, per_layer={"4": Normal(0.5)})


def test_prune_export_and_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    model = bayes_halo.attach(net, HALO(1e-3, 2e-3), N)
    with torch.no_grad():
        model.net[1].weight[:4] *= 1e-3  # four units that magnitude pruning removes whole
    masks = model.prune(0.3, "magnitude")
    total = sum(m.numel() for m in masks.values())
    kept = round(0.3 * total)
    assert sum(int(m.sum()) for m in masks.values()) == kept
    assert sum(int(torch.count_nonzero(w)) for w in model.weights().values()) == kept
    x = torch.randn(5, 3, 4)
    exported = model.export(input_shape=(3, 4))
    torch.testing.assert_close(exported.network(x), model(x), rtol=1e-5, atol=1e-6)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    again = bayes_halo.attach(nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)),
                              HALO(1e-3, 2e-3), N)
    again.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert torch.equal(again(x), model(x)) and torch.equal(again.penalty(), model.penalty())


def test_auto_method_is_coupled_for_sgd_and_the_measured_default_for_adaptive_optimisers():
    from bayes_halo.training.prior_step import ADAPTIVE_DEFAULT
    for optimizer, expected in ((torch.optim.SGD, "coupled"), (torch.optim.AdamW, ADAPTIVE_DEFAULT),
                                (torch.optim.Adam, ADAPTIVE_DEFAULT)):
        model = randomized()
        assert model.attach_optimizer(optimizer(model.net.parameters(), lr=0.1)).method == expected
    model = randomized()  # the proximal step profiles HALO's lambdas unless told otherwise
    assert model.attach_optimizer(torch.optim.Adam(model.net.parameters()), method="proximal").hyper == "profile"


def test_bad_prior_step_settings_are_refused():
    model = randomized()
    with pytest.raises(ConfigError, match="method"):
        model.attach_optimizer(torch.optim.Adam(model.net.parameters()), method="fused")
    with pytest.raises(ConfigError, match="proximal step only"):
        model.attach_optimizer(torch.optim.Adam(model.net.parameters()), method="decoupled", hyper="profile")
    with pytest.raises(ConfigError, match="weight decay"):
        model.attach_optimizer(torch.optim.AdamW(model.parameters(), weight_decay=0.01))
    with pytest.raises(ConfigError, match="does not hold"):
        model.attach_optimizer(torch.optim.Adam(model.net[2].parameters()))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_ddp_ranks_equal_one_process(optimizer, tmp_path):
    """DDP on the network, the prior step on every rank: the same module as one process on whole batches,
    and every rank holds bit-identical weights and lambdas."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    worker = str(tests / "ddp_own_loop_worker.py")
    for command in ([sys.executable, worker, str(tmp_path / "one"), optimizer],
                    [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker,
                     str(tmp_path / "two"), optimizer]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    one, rank0, rank1 = (torch.load(tmp_path / name) for name in ("one.rank0", "two.rank0", "two.rank1"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    for key, value in one.items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)


def test_grad_scaler_and_gradient_accumulation_apply_the_prior_once_per_step(float64):
    """GradScaler (unscaled before the step's hooks) and two accumulated half-batches == the plain step."""
    reference, scaled, accumulated = randomized(), randomized(), randomized()
    optimizers = {}
    for model in (reference, scaled, accumulated):
        optimizers[id(model)] = torch.optim.AdamW(model.net.parameters(), lr=0.01)
        model.attach_optimizer(optimizers[id(model)])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for x, y in batches():
        loss = reference.likelihood.mean_nll(reference(x), y)
        optimizers[id(reference)].zero_grad()
        loss.backward()
        optimizers[id(reference)].step()
        optimizers[id(scaled)].zero_grad()
        scaler.scale(scaled.likelihood.mean_nll(scaled(x), y)).backward()
        scaler.step(optimizers[id(scaled)])
        scaler.update()
        optimizers[id(accumulated)].zero_grad()
        for half in (slice(0, B // 2), slice(B // 2, B)):
            (accumulated.likelihood.mean_nll(accumulated(x[half]), y[half]) / 2).backward()
        optimizers[id(accumulated)].step()
    for model in (scaled, accumulated):
        for site, value in reference.site_values().items():
            torch.testing.assert_close(model.site_values()[site], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", ["unit", "out-unit"])
@pytest.mark.parametrize("method", ["coupled", "decoupled"])
def test_group_prior_in_the_own_loop_follows_autograd(method, groups, float64):
    """attach(groups=...) + attach_optimizer(SGD): coupled == SGD on autograd of mean_nll + R; decoupled ==
    w <- w - lr dR/dw (autograd, every member tensor of a group) then SGD on the likelihood, dR/dr on the lambdas."""
    lr, hyper_lr = 0.05, 0.03
    generator = torch.Generator().manual_seed(3)
    net = small_net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    model = bayes_halo.attach(net, bayes_halo.GroupHALO(0.01, 0.02), N, groups=groups,
                              example_input=torch.zeros(2, 6))
    assert model.groupings and set(model.sites) == set(model.groupings)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.net.parameters(), lr=lr)
    model.attach_optimizer(optimizer, method, hyper_lr=hyper_lr)
    weights, hypers = list(reference.net.parameters()), list(reference.hyper_parameters())
    by_hand = torch.optim.SGD([{"params": weights}, {"params": hypers, "lr": hyper_lr}], lr=lr)
    for x, y in batches():
        optimizer.zero_grad()
        model.likelihood.mean_nll(model(x), y).backward()
        optimizer.step()
        by_hand.zero_grad()
        if method == "coupled":
            reference.objective(x, y).backward()
        else:  # both gradients at the weights before the step
            reference.likelihood.mean_nll(reference(x), y).backward()
            grads = torch.autograd.grad(reference.penalty(), weights + hypers, allow_unused=True)
            with torch.no_grad():
                for w, g in zip(weights, grads):
                    if g is not None:
                        w.sub_(lr * g)
            for r, g in zip(hypers, grads[len(weights):]):
                r.grad = g
        by_hand.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_per_layer_priors_and_groups_do_not_mix():
    with pytest.raises(ConfigError, match="per_layer"):
        bayes_halo.attach(small_net(), bayes_halo.GroupHALO(0.01, 0.02), N, groups="unit",
                          per_layer={"0": bayes_halo.GroupHALO(0.1, 0.2)}, example_input=torch.zeros(2, 6))
