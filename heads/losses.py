"""Losses for species heads: CE, inverse-frequency weighted CE, focal, seesaw,
and the composite species + poison (+ taxonomy) objective.

Example:
    >>> loss = SeesawLoss(num_classes=3, counts=[100, 10, 1])
    >>> float(loss(torch.zeros(2, 3), torch.tensor([0, 2]))) > 0
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heads.config import POISON_MODES, SPECIES_LOSSES
from heads.errors import HeadsError
from heads.modules import HeadOutput


def inverse_frequency_weights(counts: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Class weights ``n / (C * count_c)``: rare classes weigh more, mean sample weight 1.

    Classes never seen get weight 0.
    """
    c = torch.as_tensor(np.asarray(counts, dtype=np.float64), dtype=torch.float32)
    w = torch.where(c > 0, c.sum() / (len(c) * c.clamp(min=1)), torch.zeros_like(c))
    return w


class FocalLoss(nn.Module):
    """Focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al. 2017), mean over the batch."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()


class SeesawLoss(nn.Module):
    """Seesaw loss (Wang et al., CVPR 2021) for long-tailed classification.

    For a sample of class ``i`` the logit of every other class ``j`` is
    shifted by ``log S_ij`` with ``S_ij = M_ij * C_ij``:

    - mitigation ``M_ij = (N_j / N_i)^p`` when class ``j`` is rarer than ``i``
      (else 1), so rare classes are not pushed down by frequent ones;
    - compensation ``C_ij = (σ_j / σ_i)^q`` when the predicted probability
      σ_j exceeds σ_i (else 1), which restores the penalty on false positives.

    ``counts`` fixes the class counts ``N``; without it they accumulate from
    the labels of every batch seen in training mode (so they follow a sampler
    that reweights the classes); in eval mode the loss uses the counts so far
    and leaves them unchanged. ``p=0`` or ``q=0`` turns a factor off.

    Example:
        >>> SeesawLoss(4)(torch.randn(8, 4), torch.randint(0, 4, (8,))).ndim
        0
    """

    def __init__(self, num_classes: int, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 counts: Sequence[int] | np.ndarray | None = None):
        super().__init__()
        self.num_classes, self.p, self.q, self.eps = num_classes, p, q, eps
        self.accumulate = counts is None
        if counts is None:
            init = torch.zeros(num_classes, dtype=torch.float64)
        else:
            init = torch.as_tensor(np.asarray(counts, dtype=np.float64))
            if init.shape != (num_classes,):
                raise HeadsError(f"counts has shape {tuple(init.shape)}, expected ({num_classes},)")
        self.register_buffer("counts", init)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # (B, C)
        if self.accumulate and self.training:
            # index_add_ rather than bincount: no device-to-host sync on CUDA
            self.counts.index_add_(0, target, torch.ones_like(target, dtype=self.counts.dtype))
        log_s = torch.zeros_like(logits)
        if self.p > 0:
            n = self.counts.clamp(min=1).float()
            ratio = n[None, :] / n[target][:, None]  # (B, C): N_j / N_i
            log_s = log_s + torch.where(ratio < 1, self.p * ratio.log(), 0.0)
        if self.q > 0:
            with torch.no_grad():
                prob = logits.softmax(dim=-1)
                ratio = prob / prob.gather(1, target[:, None]).clamp(min=self.eps)
                log_s = log_s + torch.where(ratio > 1, self.q * ratio.log(), 0.0)
        not_target = torch.ones_like(logits).scatter_(1, target[:, None], 0.0)
        return F.cross_entropy(logits + log_s * not_target, target)


def species_loss(name: str, num_outputs: int, counts: np.ndarray | None = None,
                 focal_gamma: float = 2.0) -> nn.Module:
    """The species loss by name: ``ce``, ``weighted_ce``, ``focal`` or ``seesaw``.

    ``counts`` are training-set class counts (needed by ``weighted_ce``;
    ``seesaw`` uses them when given and accumulates them otherwise).
    """
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "weighted_ce":
        if counts is None:
            raise HeadsError("weighted_ce needs the training class counts")
        return nn.CrossEntropyLoss(weight=inverse_frequency_weights(counts))
    if name == "focal":
        return FocalLoss(focal_gamma)
    if name == "seesaw":
        return SeesawLoss(num_outputs, counts=counts)
    raise HeadsError(f"unknown loss {name!r}; choose one of {', '.join(SPECIES_LOSSES)}")


class HeadLoss(nn.Module):
    """``L = L_species + alpha * L_poison + beta * (L_genus + L_family)``.

    The poison term is a binary cross-entropy either on the head's poison
    logit (``poison_mode="logit"``) or on the predicted poisonous probability
    mass ``sum of softmax over poisonous classes`` (``"mass"``), which ties the
    species output itself to poison safety. Taxonomy labels of ``-1`` are ignored.
    """

    def __init__(self, species: nn.Module, poisonous: np.ndarray, alpha: float = 0.1,
                 beta: float = 0.0, poison_mode: str = "logit"):
        super().__init__()
        if poison_mode not in POISON_MODES:
            raise HeadsError(f"poison_mode must be one of {POISON_MODES}, got {poison_mode!r}")
        self.species, self.alpha, self.beta, self.poison_mode = species, alpha, beta, poison_mode
        self._poisonous_np = np.asarray(poisonous, dtype=bool)
        self._cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _columns(self, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Poisonous and edible column indices (the unknown column counts as edible)."""
        key = (width, str(device))
        if key not in self._cache:
            mask = np.zeros(width, dtype=bool)
            mask[: len(self._poisonous_np)] = self._poisonous_np
            self._cache[key] = (torch.as_tensor(np.flatnonzero(mask), device=device),
                                torch.as_tensor(np.flatnonzero(~mask), device=device))
        return self._cache[key]

    def forward(self, out: HeadOutput, target: torch.Tensor, poison: torch.Tensor,
                genus: torch.Tensor | None = None, family: torch.Tensor | None = None
                ) -> torch.Tensor:
        loss = self.species(out.species, target)
        if self.alpha:
            if self.poison_mode == "logit":
                l_p = F.binary_cross_entropy_with_logits(out.poison.float(), poison.float())
            else:
                logp = F.log_softmax(out.species.float(), dim=-1)  # (B, C')
                pois_cols, edible_cols = self._columns(logp.shape[1], logp.device)
                log_pois = _logsumexp_columns(logp, pois_cols)
                log_edible = _logsumexp_columns(logp, edible_cols)
                y = poison.float()
                l_p = -(y * log_pois.clamp(min=-100) + (1 - y) * log_edible.clamp(min=-100)).mean()
            loss = loss + self.alpha * l_p
        if self.beta:
            for logits, lab in ((out.genus, genus), (out.family, family)):
                if logits is not None and lab is not None and (lab >= 0).any():
                    loss = loss + self.beta * F.cross_entropy(logits.float(), lab, ignore_index=-1)
        return loss


def _logsumexp_columns(logp: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """log of the probability mass over ``cols``; -100 (not -inf) when there are none."""
    if cols.numel() == 0:
        return logp.new_full(logp.shape[:1], -100.0)
    return torch.logsumexp(logp.index_select(1, cols), dim=-1)
