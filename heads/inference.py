"""Batched inference of a head over numpy arrays, and per-observation averaging.

Example:
    >>> ids, p = aggregate_by_observation(np.array([[1., 0.], [0., 1.], [1., 0.]]), [7, 7, 3])
    >>> ids.tolist(), p.tolist()
    ([7, 3], [[0.5, 0.5], [1.0, 0.0]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from heads.errors import HeadsError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a float array, computed in float64, returned as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


@torch.no_grad()
def predict_outputs(model: nn.Module, embeddings: np.ndarray, metadata: np.ndarray | None = None,
                    batch_size: int = 8192, device: str | torch.device | None = None
                    ) -> dict[str, np.ndarray]:
    """Run ``model`` in eval mode over all rows; returns numpy logits by output name
    (``species`` (n, C'), ``poison`` (n,), and ``genus`` / ``family`` when present)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    try:
        for s in range(0, len(embeddings), batch_size):
            x = torch.as_tensor(embeddings[s:s + batch_size], dtype=torch.float32, device=device)
            m = None
            if metadata is not None:
                m = torch.as_tensor(metadata[s:s + batch_size], dtype=torch.float32, device=device)
            out = model(x, m)
            for name, value in out._asdict().items():
                if value is not None:
                    chunks.setdefault(name, []).append(value.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:  # no rows: shapes from a dummy forward would need data; build empties
        return {"species": np.zeros((0, model.config.num_outputs), np.float32),
                "poison": np.zeros((0,), np.float32)}
    return {k: np.concatenate(v) for k, v in chunks.items()}


class ObservationMeans:
    """Per-observation means of image rows (observations in order of first appearance).

    The grouping is worked out once and reused for every array of the same rows
    (probabilities, query vectors, ...). With the observations ordered by their number of
    images, largest first, member ``j`` of every observation that has one is added in one
    vectorised step onto a leading slice of the sums: a few passes (the most images any
    observation has), each a gather and an in-place add.
    """

    def __init__(self, observation_ids: Sequence[int] | np.ndarray):
        obs = np.asarray(observation_ids).ravel()
        uniq, first, inv = np.unique(obs, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # sorted-id rank -> first-appearance rank
        rank = np.empty(len(uniq), np.int64)
        rank[order] = np.arange(len(uniq))
        group = rank[inv.ravel()]  # (n,) each row's observation, numbered by first appearance
        counts = np.bincount(group, minlength=len(uniq))
        rows = np.argsort(group, kind="stable")  # rows of observation 0, then 1, ...
        starts = np.cumsum(counts) - counts
        by_size = np.argsort(-counts, kind="stable")  # observations, most images first
        sizes = counts[by_size]
        self._members = [rows[starts[by_size[:int(np.count_nonzero(sizes > j))]] + j]
                         for j in range(int(sizes[0]) if len(sizes) else 0)]
        self._scale = 1.0 / sizes
        self._back = np.empty(len(uniq), np.int64)
        self._back[by_size] = np.arange(len(uniq))
        self.ids = uniq[order]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        dtype = np.dtype(values.dtype if values.dtype in (np.float32, np.float64) else np.float64)
        values = values.astype(dtype, copy=False)
        if not self._members:
            return values[:0]
        sums = values[self._members[0]]  # a new array: one row per observation
        for member in self._members[1:]:
            sums[:len(member)] += values[member]
        sums *= self._scale.astype(dtype).reshape((-1,) + (1,) * (sums.ndim - 1))
        return sums[self._back]


def aggregate_by_observation(values: np.ndarray, observation_ids: Sequence[int] | np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` rows over each observation's images.

    Returns ``(ids, means)``: one row per observation id, in order of first
    appearance. ``values`` may be (n,) or (n, C).
    """
    values = np.asarray(values)
    obs = np.asarray(observation_ids)
    if obs.shape != values.shape[:1]:
        raise HeadsError(
            f"observation_ids has shape {obs.shape} but there are {len(values)} rows; "
            "pass one observation id per image row"
        )
    if len(obs) == 0:
        return obs.astype(np.int64), values
    means = ObservationMeans(obs)
    return means.ids, means(values)
