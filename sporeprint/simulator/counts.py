"""How many images and observations each species gets, in training and in the later period.

Training counts are long-tailed like DF20: exactly ``min_count`` for the rarest
class, ``max_count`` for the most frequent, and a total close to ``total``.
The later (validation/test) period draws observations from a *different*
class distribution: flatter, with some known species absent, a fixed share
of unknown species and a fixed share of poisonous observations.

>>> import numpy as np
>>> c = train_image_counts(np.random.default_rng(0), 1604, 295_938, 30, 1900)
>>> int(c.min()), int(c.max())
(30, 1900)
"""

from __future__ import annotations

import numpy as np

# P(1), P(2), P(3), P(4) images per observation. Training: as in the DF20-Mini test
# metadata (3,640 images of 3,397 observations, 1.07 per observation); the later period: as in
# DF21 (60,832 images of 30,131 validation observations, about 2 per observation).
IMAGES_PER_OBSERVATION = {"train": (0.936, 0.057, 0.006, 0.001),
                          "later": (0.45, 0.30, 0.15, 0.10)}


def _long_tail_shape(n: int, total: float, lo: float, hi: float) -> np.ndarray:
    """Descending counts ``lo * (hi/lo) ** (u ** gamma)``, u from 1 to 0, with gamma chosen
    by bisection so that the counts sum to ``total``."""
    u = np.linspace(1.0, 0.0, n)
    span = np.log(hi / lo)
    g_lo, g_hi = 0.05, 50.0
    for _ in range(60):
        g = np.sqrt(g_lo * g_hi)
        s = (lo * np.exp(span * u**g)).sum()
        g_lo, g_hi = (g, g_hi) if s > total else (g_lo, g)
    return lo * np.exp(span * u**g)


def train_image_counts(rng: np.random.Generator, n_classes: int, total: int, min_count: int,
                       max_count: int, poisonous: np.ndarray | None = None,
                       poison_boost: float = 1.3) -> np.ndarray:
    """Training images per class (int64, indexed like ``poisonous``).

    Poisonous species tend to be more common (DF20: 3% of classes, 4.4% of images):
    their rank is drawn with ``poison_boost`` times the weight of the others.
    """
    shape = np.rint(_long_tail_shape(n_classes, total, min_count, max_count)).astype(np.int64)
    weight = np.ones(n_classes)
    if poisonous is not None:
        weight[poisonous] = poison_boost
    # Weighted random order (Efraimidis-Spirakis keys): heavier classes come first more often.
    keys = rng.random(n_classes) ** (1.0 / weight)
    order = np.argsort(-keys, kind="stable")
    counts = np.empty(n_classes, np.int64)
    counts[order] = shape
    return counts


def images_per_observation(rng: np.random.Generator, n: int, period: str = "later") -> np.ndarray:
    """1..4 images for each of ``n`` observations of ``period`` (``train`` or ``later``)."""
    p = np.array(IMAGES_PER_OBSERVATION[period])
    return rng.choice(np.arange(1, 5), size=n, p=p / p.sum())


def split_into_observations(rng: np.random.Generator,
                            image_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Species index of each observation such that species ``i`` gets about
    ``image_counts[i]`` images in total (none when 0); returns ``(species, images)``."""
    p = np.array(IMAGES_PER_OBSERVATION["train"])
    mean = float(np.dot(np.arange(1, 5), p / p.sum()))
    n_obs = np.where(image_counts > 0, np.maximum(1, np.rint(image_counts / mean)), 0)
    n_obs = n_obs.astype(np.int64)
    species = np.repeat(np.arange(len(image_counts)), n_obs)
    return species, images_per_observation(rng, len(species), "train")


def period_weights(rng: np.random.Generator, train_counts: np.ndarray, known: np.ndarray,
                   poisonous: np.ndarray, unknown_fraction: float, poisonous_fraction: float,
                   presence: float = 0.8, flatten: float = 0.6, jitter: float = 0.8) -> np.ndarray:
    """Probability of each species in the validation/test period.

    Known species: ``train_count ** flatten`` times log-normal jitter, a share
    ``1 - presence`` of the edible ones absent; then rescaled so that poisonous
    species carry ``poisonous_fraction`` and unknown species ``unknown_fraction``
    of the observations.
    """
    n = len(known)
    w = np.zeros(n)
    base = np.maximum(train_counts.astype(float), 1.0) ** flatten
    w[known] = base[known] * np.exp(jitter * rng.standard_normal(int(known.sum())))
    absent = known & ~poisonous & (rng.random(n) > presence)
    w[absent] = 0.0
    unknown = ~known
    w[unknown] = np.exp(1.0 * rng.standard_normal(int(unknown.sum())))
    edible_known = known & ~poisonous
    parts = [(edible_known, 1.0 - unknown_fraction - poisonous_fraction),
             (known & poisonous, poisonous_fraction), (unknown, unknown_fraction)]
    p = np.zeros(n)
    for mask, share in parts:
        if w[mask].sum() > 0:
            p[mask] = w[mask] / w[mask].sum() * share
    return p / p.sum()
