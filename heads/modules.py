"""Classifier heads over a frozen image embedding plus encoded metadata.

Three heads share one output contract, :class:`HeadOutput`:

- :class:`LinearHead`: one linear layer over ``[embedding, metadata]``;
- :class:`MLPHead`: ``[embedding, metadata]`` -> hidden blocks (Linear, norm,
  GELU, dropout) -> classifiers;
- :class:`FusionHead`: each metadata group (date, place, substrate/habitat, ...)
  becomes one token of the model width, fused with the image token by a small
  transformer encoder; the classifiers read the image token.

Species logits have ``num_classes`` columns, plus one last "unknown" column
when ``unknown_output`` is set. Every head also has a poisonous logit and,
when ``num_genus`` / ``num_family`` > 0, taxonomy logits.

Example:
    >>> cfg = MLPConfig(embed_dim=8, num_classes=3, meta_dim=2, hidden=16)
    >>> head = build_head(cfg)
    >>> out = head(torch.zeros(4, 8), torch.zeros(4, 2))
    >>> tuple(out.species.shape), tuple(out.poison.shape)
    ((4, 3), (4,))
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from heads.errors import HeadsError

# Feature-name prefixes of the store's metadata encoder (``substrate=<value>``,
# ``month_sin``, ``geohash_3``, ...), grouped into fusion tokens. The first
# matching group wins; both ``_`` and ``=`` separators are accepted.
METADATA_GROUP_PREFIXES: dict[str, tuple[str, ...]] = {
    "date": ("month_", "day_", "year_", "date_"),
    "place": ("geohash_", "geo_", "lat_", "lon_", "latitude", "longitude", "country_", "coord_"),
    "substrate": ("metasubstrate_", "metasubstrate=", "meta_substrate_", "meta_substrate=",
                  "substrate_", "substrate="),
    "habitat": ("habitat_", "habitat="),
}


def metadata_groups(column_names: Sequence[str]) -> dict[str, list[int]]:
    """Column indices of each metadata group, from the encoder's column names.

    Columns matching no known prefix go to an ``other`` group; empty groups
    are left out.

    Example:
        >>> metadata_groups(["month_sin", "geo_2", "habitat_bog", "x"])
        {'date': [0], 'place': [1], 'habitat': [2], 'other': [3]}
    """
    groups: dict[str, list[int]] = {name: [] for name in METADATA_GROUP_PREFIXES}
    groups["other"] = []
    for i, name in enumerate(column_names):
        low = name.lower()
        for group, prefixes in METADATA_GROUP_PREFIXES.items():
            if low.startswith(prefixes):
                groups[group].append(i)
                break
        else:
            groups["other"].append(i)
    return {k: v for k, v in groups.items() if v}


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


class HeadOutput(NamedTuple):
    species: torch.Tensor  # (B, C) or (B, C + 1) with the unknown column last
    poison: torch.Tensor  # (B,) poisonous logit
    genus: torch.Tensor | None = None  # (B, G)
    family: torch.Tensor | None = None  # (B, F)


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
    hidden: int = 4096
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
            if not isinstance(name, str) or not isinstance(cols, (list, tuple)) or not cols or not all(
                    isinstance(c, numbers.Integral) and not isinstance(c, bool)
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


class _Outputs(nn.Module):
    """The classifiers on top of a head's feature vector."""

    def __init__(self, dim: int, cfg: HeadConfig):
        super().__init__()
        self.species = nn.Linear(dim, cfg.num_outputs)
        self.poison = nn.Linear(dim, 1)
        self.genus = nn.Linear(dim, cfg.num_genus) if cfg.num_genus else None
        self.family = nn.Linear(dim, cfg.num_family) if cfg.num_family else None

    def forward(self, f: torch.Tensor) -> HeadOutput:
        return HeadOutput(
            species=self.species(f),
            poison=self.poison(f).squeeze(-1),
            genus=self.genus(f) if self.genus is not None else None,
            family=self.family(f) if self.family is not None else None,
        )


class _Head(nn.Module):
    config: HeadConfig

    def forward_features(self, x: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, meta: torch.Tensor | None = None, pre_logits: bool = False
    ) -> HeadOutput | torch.Tensor:
        f = self.forward_features(x, meta)
        return f if pre_logits else self.out(f)

    def _check_meta(self, meta: torch.Tensor | None) -> None:
        m = self.config.meta_dim
        if m and (meta is None or meta.shape[-1] != m):
            got = None if meta is None else tuple(meta.shape)
            raise HeadsError(f"this head expects metadata with {m} columns, got {got}")

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_norm(x) if self.in_norm is not None else x  # (B, d)

    def _concat(self, x: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        x = self._input(x)
        if self.config.meta_dim == 0:
            return x
        self._check_meta(meta)
        return torch.cat([x, meta.to(x.dtype)], dim=-1)


class LinearHead(_Head):
    def __init__(self, cfg: LinearConfig):
        super().__init__()
        self.config = cfg
        self.in_norm = nn.LayerNorm(cfg.embed_dim) if cfg.input_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.out = _Outputs(cfg.embed_dim + cfg.meta_dim, cfg)

    def forward_features(self, x, meta):
        return self.drop(self._concat(x, meta))  # (B, d + m)


class MLPHead(_Head):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        if cfg.norm not in ("layer", "batch", "none"):
            raise HeadsError(f"norm must be 'layer', 'batch' or 'none', got {cfg.norm!r}")
        if cfg.hidden < 1 or cfg.depth < 1:
            raise HeadsError(f"hidden and depth must be >= 1, got {cfg.hidden}, {cfg.depth}")
        self.config = cfg
        self.in_norm = nn.LayerNorm(cfg.embed_dim) if cfg.input_norm else None
        blocks: list[nn.Module] = []
        d_in = cfg.embed_dim + cfg.meta_dim
        for _ in range(cfg.depth):
            norm = {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d}.get(cfg.norm)
            blocks += [
                nn.Linear(d_in, cfg.hidden),
                norm(cfg.hidden) if norm else nn.Identity(),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
            ]
            d_in = cfg.hidden
        self.body = nn.Sequential(*blocks)
        self.out = _Outputs(cfg.hidden, cfg)

    def forward_features(self, x, meta):
        return self.body(self._concat(x, meta))  # (B, hidden)


class FusionHead(_Head):
    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.config = cfg
        self.in_norm = nn.LayerNorm(cfg.embed_dim) if cfg.input_norm else None
        width = cfg.width or cfg.embed_dim
        if width % cfg.heads:
            raise HeadsError(
                f"token width {width} is not divisible by heads={cfg.heads}; "
                "pick a width or a number of heads that divides it"
            )
        if cfg.meta_dim and not cfg.groups:
            cfg.groups = {"metadata": list(range(cfg.meta_dim))}
        for name, cols in cfg.groups.items():
            bad = [c for c in cols if not 0 <= c < cfg.meta_dim]
            if bad or not cols:
                raise HeadsError(
                    f"metadata group {name!r} has columns {bad or cols} outside 0..{cfg.meta_dim - 1}; "
                    "build groups with metadata_groups(feature_names)"
                )
        self.group_names = list(cfg.groups)
        for i, name in enumerate(self.group_names):
            self.register_buffer(f"cols_{i}", torch.tensor(cfg.groups[name], dtype=torch.long),
                                 persistent=False)
        self.image_proj = nn.Identity() if width == cfg.embed_dim else nn.Linear(cfg.embed_dim, width)
        self.meta_proj = nn.ModuleList(nn.Linear(len(cfg.groups[n]), width) for n in self.group_names)
        self.token_type = nn.Parameter(torch.zeros(1 + len(self.group_names), width))
        nn.init.normal_(self.token_type, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=width, nhead=cfg.heads, dim_feedforward=cfg.ffn_mult * width,
            dropout=cfg.dropout, activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = _Outputs(width, cfg)

    def forward_features(self, x, meta):
        tokens = [self.image_proj(self._input(x))]  # (B, W)
        if self.group_names:
            self._check_meta(meta)
            meta = meta.to(x.dtype)
            for i, proj in enumerate(self.meta_proj):
                tokens.append(proj(meta.index_select(1, getattr(self, f"cols_{i}"))))
        t = torch.stack(tokens, dim=1) + self.token_type  # (B, 1 + groups, W)
        t = self.encoder(t)
        return self.norm(t[:, 0])  # the image token, (B, W)


HEADS: dict[str, type[_Head]] = {"linear": LinearHead, "mlp": MLPHead, "fusion": FusionHead}


def build_head(config: HeadConfig) -> nn.Module:
    """The head module for a config (``LinearConfig``, ``MLPConfig`` or ``FusionConfig``)."""
    config.validate()
    return HEADS[config.kind](config)
