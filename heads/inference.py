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
from scipy.sparse import csr_matrix
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
    """Per-observation means of image rows (observations in order of first appearance),
    one sparse product per array; the grouping is worked out once and reused for every
    array of the same rows (probabilities, query vectors, ...)."""

    def __init__(self, observation_ids: Sequence[int] | np.ndarray):
        obs = np.asarray(observation_ids)
        uniq, first, inv = np.unique(obs, return_index=True, return_inverse=True)
        counts = np.bincount(inv, minlength=len(uniq))
        # (observations x images) averaging matrix, built once per dtype
        self._weights = 1.0 / counts[inv]
        self._where = (inv, np.arange(len(obs)))
        self._shape = (len(uniq), len(obs))
        self._order = np.argsort(first, kind="stable")
        self._matrices: dict = {}
        self.ids = uniq[self._order]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        dtype = np.dtype(values.dtype if values.dtype in (np.float32, np.float64) else np.float64)
        avg = self._matrices.get(dtype)
        if avg is None:
            avg = csr_matrix((self._weights.astype(dtype), self._where), shape=self._shape)
            self._matrices[dtype] = avg
        return (avg @ values.astype(dtype, copy=False))[self._order].astype(dtype, copy=False)


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
