"""A tiny network and one prior of each kind on it, shared by the tests of BayesianModule and PriorSGD."""
from torch import nn

from bayes_halo.priors import HALO, AdaptiveLaplace, Laplace, Normal, SharedHALO


def small_net():
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def make_prior(name, net):
    pilot = {k: v.detach() for k, v in net.named_parameters() if k.endswith("weight")}
    return {"none": None, "ridge": Normal(0.05), "laplace": Laplace(0.01),
            "adaptive-laplace": AdaptiveLaplace.from_pilot(0.01, pilot),
            "halo": HALO(0.01, 0.02), "halo-decay": HALO(0.01, 0.02, lambda_decay=0.05),
            "shared-halo": SharedHALO(0.01, 0.02)}[name]
