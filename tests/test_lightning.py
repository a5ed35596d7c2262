"""bayes_halo.lightning: the callback inside a real lightning.Trainer.fit equals the plain loop's steps."""
import importlib
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bayes_halo
from bayes_halo.priors import HALO
from tiny_models import small_net

pl = pytest.importorskip("bayes_halo.lightning").pl
N, B, XI, PSI = 64, 16, 0.01, 0.02


class Lit(pl.LightningModule):
    def __init__(self, net, optimizer):
        super().__init__()
        self.net, self.make_optimizer = net, optimizer

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)  # the likelihood alone

    def configure_optimizers(self):
        return self.make_optimizer(self.net.parameters())


def data():
    generator = torch.Generator().manual_seed(3)
    return TensorDataset(torch.randn(N, 6, generator=generator), torch.randint(0, 3, (N,), generator=generator))


def plain_loop(net, optimizer, method):
    """The same steps without Lightning: attach, attach_optimizer, the usual loop."""
    model = bayes_halo.attach(net, HALO(XI, PSI), N)
    opt = optimizer(net.parameters())
    model.attach_optimizer(opt, method=method)
    for x, y in DataLoader(data(), batch_size=B):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("optimizer, method", [
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "coupled"),
    (lambda p: torch.optim.AdamW(p, lr=0.01), "proximal"),
])
def test_callback_in_trainer_fit_equals_the_plain_loop(optimizer, method):
    torch.manual_seed(0)
    net = small_net()
    reference = plain_loop(_copy(net), optimizer, method)
    callback = bayes_halo.lightning.HaloCallback(HALO(XI, PSI), N, method=method)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(Lit(net, optimizer), DataLoader(data(), batch_size=B))
    fitted = callback.model
    assert fitted.sites == ("net.0.weight", "net.2.weight")
    for site, ref_site in zip(fitted.sites, reference.sites):
        torch.testing.assert_close(fitted.weights()[site], reference.weights()[ref_site], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fitted.hyper(site)["lambda"], reference.hyper(ref_site)["lambda"],
                                   rtol=1e-5, atol=1e-6)
    assert set(callback.state_dict()) == set(fitted.hyper_raw.state_dict())


def _copy(net):
    twin = small_net()
    twin.load_state_dict(net.state_dict())
    return twin


def test_without_lightning_the_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "bayes_halo.lightning")
    with pytest.raises(ImportError, match=r"pip install 'bayes_halo\[lightning\]'"):
        importlib.import_module("bayes_halo.lightning")
