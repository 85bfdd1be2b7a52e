"""Settings of a head and of its training: plain dataclasses, no torch.

The defaults here are the only ones (docs/results.md says what evidence each has):
``Classifier().fit`` from Python and ``sporeprint train`` (which takes its option
defaults from these classes) train the same way.

Example:
    >>> TrainConfig().lr, MLPConfig(embed_dim=8, num_classes=3).hidden
    (0.001, 1024)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from heads.errors import HeadsError

SPECIES_LOSSES = ("ce", "weighted_ce", "focal", "seesaw")
POISON_MODES = ("logit", "mass")
SAMPLERS = ("shuffle", "balanced", "val_matched")
SEESAW_COUNTS = ("accumulate", "fixed")
SCHEDULERS = ("cosine", "plateau", "none")
# metric -> True when higher is better
MONITORS = {"loss": False, "accuracy": True, "macro_f1": True, "top3": True,
            "track1": False, "track2": False, "track3": False}


# -- checks of one setting, used by the configs' validate() -------------------------
def check_int(name: str, value: Any, low: int | None = None) -> None:
    """Refuse a setting that is not a whole number (``low`` or more)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or (low is not None and value < low):
        raise HeadsError(f"{name}={value!r} must be a whole number"
                         + (f" >= {low}" if low is not None else ""))


def check_number(name: str, value: Any, low: float | None = None,
                 below: float | None = None) -> None:
    """Refuse a setting that is not a finite number in ``[low, below)``."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and value == value \
        and abs(value) != float("inf")
    if not ok or (low is not None and value < low) or (below is not None and value >= below):
        bounds = " and ".join(([f">= {low}"] if low is not None else [])
                              + ([f"< {below}"] if below is not None else []))
        raise HeadsError(f"{name}={value!r} must be a number" + (f" {bounds}" if bounds else ""))


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise HeadsError(f"{name}={value!r} must be true or false")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise HeadsError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")


@dataclass
class HeadConfig:
    """Fields shared by every head; subclasses add their own."""

    embed_dim: int
    num_classes: int
    meta_dim: int = 0
    unknown_output: bool = False
    num_genus: int = 0
    num_family: int = 0
    # LayerNorm on the image embedding before it meets the metadata columns: unit-norm
    # vectors have components ~1/sqrt(d), which one-hot metadata would otherwise drown.
    input_norm: bool = True
    kind: ClassVar[str] = ""

    @property
    def num_outputs(self) -> int:
        return self.num_classes + int(self.unknown_output)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def validate(self) -> None:
        """Refuse settings of the wrong type or range (one line naming the setting)."""
        check_int("embed_dim", self.embed_dim, 1)
        check_int("num_classes", self.num_classes)
        if self.num_classes < 1:
            raise HeadsError(
                f"num_classes must be at least 1, got {self.num_classes}; "
                "check that the training labels are not all unknown (-1)"
            )
        for name in ("meta_dim", "num_genus", "num_family"):
            check_int(name, getattr(self, name), 0)
        check_bool("unknown_output", self.unknown_output)
        check_bool("input_norm", self.input_norm)


@dataclass
class LinearConfig(HeadConfig):
    dropout: float = 0.0
    kind: ClassVar[str] = "linear"

    def validate(self) -> None:
        super().validate()
        check_number("dropout", self.dropout, 0.0, 1.0)


@dataclass
class MLPConfig(HeadConfig):
    hidden: int = 1024  # best width on the earlier simulator; not re-measured (docs/results.md)
    depth: int = 1  # hidden blocks
    norm: str = "layer"  # "layer" | "batch" | "none"
    dropout: float = 0.2
    kind: ClassVar[str] = "mlp"

    def validate(self) -> None:
        super().validate()
        check_int("hidden", self.hidden, 1)
        check_int("depth", self.depth, 1)
        check_choice("norm", self.norm, ("layer", "batch", "none"))
        check_number("dropout", self.dropout, 0.0, 1.0)


@dataclass
class FusionConfig(HeadConfig):
    # group name -> metadata column indices; see metadata_groups()
    groups: dict[str, list[int]] = field(default_factory=dict)
    width: int = 0  # token width; 0 = the embedding width
    layers: int = 1
    heads: int = 8
    ffn_mult: int = 2
    dropout: float = 0.1
    kind: ClassVar[str] = "fusion"

    def validate(self) -> None:
        super().validate()
        check_int("width", self.width, 0)
        for name in ("layers", "heads", "ffn_mult"):
            check_int(name, getattr(self, name), 1)
        check_number("dropout", self.dropout, 0.0, 1.0)
        if not isinstance(self.groups, dict):
            raise HeadsError(f"groups={self.groups!r} must map group names to column lists")
        for name, cols in self.groups.items():
            if not isinstance(name, str) or not isinstance(cols, (list, tuple)) or not cols \
                    or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool)
                               and 0 <= c < self.meta_dim for c in cols):
                raise HeadsError(
                    f"metadata group {name!r} has columns {cols!r}, not a list of columns in "
                    f"0..{self.meta_dim - 1}; build groups with metadata_groups(feature_names)")


CONFIGS: dict[str, type[HeadConfig]] = {c.kind: c for c in (LinearConfig, MLPConfig, FusionConfig)}


def config_from_dict(d: dict[str, Any]) -> HeadConfig:
    """Rebuild a head config saved with :meth:`HeadConfig.to_dict`."""
    d = dict(d)
    d.setdefault("input_norm", False)  # heads saved before the setting existed had none
    return make_config(d.pop("kind", None), **d)


def make_config(kind: str, **kwargs: Any) -> HeadConfig:
    """``make_config("mlp", embed_dim=1024, num_classes=1604, hidden=512)``."""
    if kind not in CONFIGS:
        raise HeadsError(f"unknown head kind {kind!r}; expected one of {sorted(CONFIGS)}")
    cls = CONFIGS[kind]
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise HeadsError(f"unknown {kind} head settings {unknown}; valid ones are {sorted(names)}")
    return cls(**kwargs)


@dataclass
class TrainConfig:
    """Training settings; saved with every trained head."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3  # best on the earlier simulator's sweep; not re-measured (docs/results.md)
    weight_decay: float = 0.01
    loss: str = "seesaw"  # ce | weighted_ce | focal | seesaw
    # seesaw class counts: "accumulate" the labels of the training batches (what the loss
    # sees, after the sampler), or keep the training set's "fixed" counts
    seesaw_counts: str = "accumulate"
    poison_weight: float = 0.1  # alpha
    poison_mode: str = "logit"  # logit | mass
    taxonomy_weight: float = 0.0  # beta
    sampler: str = "shuffle"  # shuffle | balanced | val_matched
    val_prior: float = 0.5  # val_matched: pseudo-count for classes absent from validation
    scheduler: str = "cosine"  # cosine (warm restarts) | plateau | none
    restart_epochs: int = 10  # cosine: epochs per cycle (the learning rate changes per epoch)
    min_lr: float = 0.0
    monitor: str = "loss"
    patience: int = 5  # early stopping after this many epochs without improvement; 0 = off
    keep: int = 2  # best checkpoints kept in memory
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA
    eval_batch_size: int = 8192
    progress: bool = True

    def validate(self) -> None:
        """Refuse settings of the wrong type or range (one line naming the setting)."""
        for name, choices in (("loss", SPECIES_LOSSES), ("poison_mode", POISON_MODES),
                              ("sampler", SAMPLERS), ("seesaw_counts", SEESAW_COUNTS),
                              ("scheduler", SCHEDULERS), ("monitor", tuple(MONITORS))):
            check_choice(name, getattr(self, name), choices)
        for name, low in (("epochs", 1), ("batch_size", 1), ("restart_epochs", 1),
                          ("patience", 0), ("keep", 1), ("eval_batch_size", 1), ("seed", None)):
            check_int(name, getattr(self, name), low)
        check_number("lr", self.lr, 0.0)
        for name in ("weight_decay", "poison_weight", "taxonomy_weight", "val_prior", "min_lr",
                     "grad_clip"):
            check_number(name, getattr(self, name), 0.0)
        check_bool("amp", self.amp)
        check_bool("progress", self.progress)
        if not isinstance(self.device, str):
            raise HeadsError(f"device={self.device!r} must be a name: auto, cpu, cuda or cuda:N")
