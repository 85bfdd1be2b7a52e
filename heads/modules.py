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

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from heads.config import (  # noqa: F401 (the head configs live with the training settings)
    CONFIGS,
    FusionConfig,
    HeadConfig,
    LinearConfig,
    MLPConfig,
    config_from_dict,
    make_config,
)
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


class HeadOutput(NamedTuple):
    species: torch.Tensor  # (B, C) or (B, C + 1) with the unknown column last
    poison: torch.Tensor  # (B,) poisonous logit
    genus: torch.Tensor | None = None  # (B, G)
    family: torch.Tensor | None = None  # (B, F)


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
