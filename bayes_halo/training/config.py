"""Every setting of a training run, with the defaults of ``python -m bayes_halo.fit``.

Penalty strengths follow the paper's per-example convention (see :mod:`bayes_halo.priors.base`).
The default strengths were chosen on a validation split (5,000 training images) for the default
schedule (LeNet-300-100, MNIST, 30 epochs, batch 100, SGD lr 0.1 momentum 0.9, x0.1 at 50% and
75%), as the best mean validation accuracy after one-shot magnitude pruning:

* ``halo``: ``experiments/tune_defaults`` (3 seeds; mean over keep fractions 5, 2, 1.5, 1 %);
* ``laplace``, ``adaptive-laplace``, ``shared-halo``: the seed-0 scout of
  ``experiments/pruning_study`` (its choice at 2 % kept);
* ``ridge``: not tuned, the conventional weight decay 5e-4 (ridge is no sparsity method).

How far HALO's lambdas travel depends on ``psi`` times the number of steps and the learning
rate, so a default ``psi`` belongs to the default schedule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..priors import PRIORS

#: per-prior default strengths for the default schedule (see the module docstring)
DEFAULT_STRENGTHS: dict[str, dict[str, float]] = {
    "none": {},
    "ridge": {"xi": 5e-4},
    "laplace": {"xi": 1e-4},
    "adaptive-laplace": {"xi": 1e-5},
    "halo": {"xi": 5e-5, "psi": 1e-4},
    "shared-halo": {"xi": 3e-3, "psi": 1e-3},
}
TRAINABLE_PRIORS = tuple(DEFAULT_STRENGTHS)


@dataclass
class FitConfig:
    """A training run: data, network, prior, optimiser, schedule, pruning, outputs."""

    prior: str = "halo"
    model: str = "lenet300"
    dataset: str = "mnist"
    data_dir: str | None = "data"
    download: bool = True
    val_size: int = 5000
    subset: int | None = None
    epochs: int = 30
    batch_size: int = 100
    lr: float = 0.1
    lambda_lr: float | None = None
    positivity: str = "abs"
    momentum: float = 0.9
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    xi: float | None = None
    psi: float | None = None
    gamma: float = 1.0
    pilot_epochs: int = 5
    include_bias: bool = False
    exclude: tuple[str, ...] = ()
    keep: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01)
    prune_scope: str = "all"
    prune_by: str = "global"
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    seed: int = 0
    threads: int | None = None
    near_zero: float = 1e-3
    svi: bool = False
    svi_epochs: int = 3
    svi_lr: float = 1e-3
    svi_samples: int = 20
    keep_draws: tuple[str, ...] = ()
    #: weight decay on HALO's lambdas as a Gaussian factor in the prior; the paper's CIFAR recipe used 1e-4
    lambda_decay: float = 0.0
    #: torch.compile the fused SGD + prior update: "auto" (when the run is long enough to pay the
    #: compile back, see training.optim.compile_pays), "on" or "off"
    compile_update: str = "auto"

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        self.keep = tuple(float(k) for k in self.keep)
        self.exclude = tuple(self.exclude)
        self.keep_draws = tuple(self.keep_draws)
        defaults = DEFAULT_STRENGTHS.get(self.prior, {})
        if self.xi is None:
            self.xi = defaults.get("xi")
        if self.psi is None:
            self.psi = defaults.get("psi")
        self.validate()

    @property
    def hyper_lr(self) -> float:
        """Learning rate of the prior's hyper-variables (default: the network's, as in the paper)."""
        return self.lr if self.lambda_lr is None else self.lambda_lr

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
        if self.prior not in PRIORS:
            raise ConfigError(f"unknown prior {self.prior!r}; choose one of {', '.join(TRAINABLE_PRIORS)}")
        if self.prior not in TRAINABLE_PRIORS:
            raise ConfigError(f"prior {self.prior!r} has a degenerate MAP (no finite optimum); "
                              f"train with one of {', '.join(TRAINABLE_PRIORS)} and use SVI for the horseshoe")
        for name in ("epochs", "batch_size", "svi_epochs", "svi_samples"):
            _check(name, getattr(self, name), lambda v: v >= 1, "at least 1")
        for name in ("pilot_epochs", "finetune_epochs", "val_size"):
            _check(name, getattr(self, name), lambda v: v >= 0, "0 or more")
        for name in ("lr", "finetune_lr", "lr_gamma", "gamma", "near_zero", "svi_lr"):
            _check(name, getattr(self, name), lambda v: math.isfinite(v) and v > 0, "a positive number")
        if self.lambda_lr is not None:
            _check("lambda_lr", self.lambda_lr, lambda v: math.isfinite(v) and v > 0, "a positive number")
        _check("momentum", self.momentum, lambda v: 0 <= v < 1, "in [0, 1)")
        _check("weight_decay", self.weight_decay, lambda v: math.isfinite(v) and v >= 0, "0 or more")
        for name in ("xi", "psi"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, lambda v: math.isfinite(v) and v > 0, "a positive number")
        if self.prior != "none" and self.xi is None:
            raise ConfigError(f"prior {self.prior!r} needs --xi")
        if self.prior in ("halo", "shared-halo") and self.psi is None:
            raise ConfigError(f"prior {self.prior!r} needs --psi")
        if not self.keep:
            raise ConfigError("give at least one keep fraction")
        for k in self.keep:
            if not (math.isfinite(k) and 0 < k <= 1):
                raise ConfigError(f"keep fraction must be in (0, 1], got {k}")
        for m in self.lr_milestones:
            if not 0 < m < 1:
                raise ConfigError(f"lr milestones are fractions of training in (0, 1), got {m}")
        if self.positivity not in ("abs", "exp"):
            raise ConfigError(f"unknown positivity {self.positivity!r}; choose 'abs' or 'exp'")
        if self.prune_scope not in ("all", "conv"):
            raise ConfigError(f"unknown prune scope {self.prune_scope!r}; choose 'all' or 'conv'")
        if self.prune_by not in ("global", "layer"):
            raise ConfigError(f"unknown prune-by {self.prune_by!r}; choose 'global' or 'layer'")
        if self.subset is not None:
            _check("subset", self.subset, lambda v: v >= 1, "at least 1")
        if self.threads is not None:
            _check("threads", self.threads, lambda v: v >= 1, "at least 1")
        _check("lambda_decay", self.lambda_decay, lambda v: math.isfinite(v) and v >= 0, "0 or more")
        if self.lambda_decay > 0 and self.prior != "halo":
            raise ConfigError(f"--lambda-decay acts on HALO's lambdas; prior {self.prior!r} has none")
        if self.compile_update not in ("auto", "on", "off"):
            raise ConfigError(f"--compile-update must be auto, on or off, got {self.compile_update!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FitConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a config from another version)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        return cls(**data)

    def training_signature(self) -> dict[str, Any]:
        """Settings that must match for ``--resume`` to continue the same run."""
        ignore = {"keep", "prune_scope", "prune_by", "finetune_epochs", "finetune_lr", "threads",
                  "data_dir", "download", "svi", "svi_epochs", "svi_lr", "svi_samples", "keep_draws",
                  "compile_update"}  # compiled and eager updates are bit for bit the same
        return {k: v for k, v in self.to_dict().items() if k not in ignore}


def _check(name: str, value: Any, ok, what: str) -> None:
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value}")
