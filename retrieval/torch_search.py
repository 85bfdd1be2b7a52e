"""Exact inner-product search with PyTorch, for a GPU that FAISS cannot use.

A FAISS build without GPU support still leaves a CUDA device idle when
PyTorch sees one. :class:`TorchExactSearch` keeps the (normalised) vectors on
that device and answers queries with a blocked matrix product and
``torch.topk``; a filter is a boolean mask over the stored rows, so filtered
and unfiltered searches cost the same. Results follow :class:`VectorIndex`:
float32 scores and int64 store ids, ``-inf`` / ``-1`` in empty slots.

torch is imported only when one of these functions runs, so ``import
retrieval`` never loads it. Scores are float32 products; on a GPU they follow
``torch.get_float32_matmul_precision()`` (``"highest"``, full float32, by default).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

import numpy as np

logger = logging.getLogger(__name__)

# Scores held at once per block: queries x stored rows (float32), 256 MiB.
BLOCK_SCORES = 2**26
_CUDA: bool | None = None


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (checked once).

    Does not import torch on a Linux machine without an NVIDIA driver, so a
    CPU-only search pays nothing for the check.
    """
    global _CUDA
    if _CUDA is None:
        if "torch" not in sys.modules and (
                importlib.util.find_spec("torch") is None
                or (sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"))):
            _CUDA = False
        else:
            import torch

            _CUDA = bool(torch.cuda.is_available())
    return _CUDA


class TorchExactSearch:
    """Exact top-k over ``vectors`` (n, d) float32, already L2-normalised, keyed by ``ids``.

    Example:
        >>> s = TorchExactSearch(np.eye(3, 4, dtype=np.float32), np.array([7, 8, 9]), "cpu")
        >>> s.search(np.eye(1, 4, dtype=np.float32), k=4)[1]
        array([[ 7,  8,  9, -1]])
    """

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, device: str = "cuda"):
        import torch

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != ids.size:
            raise ValueError(f"vectors {vectors.shape} and ids {ids.shape} do not match: one id per row")
        self.device = torch.device(device)
        # On the CPU from_numpy shares the memory; elsewhere this is the one copy.
        self.vectors = torch.from_numpy(vectors).to(self.device)
        self.ids = ids.copy()
        self._sorted = np.argsort(self.ids, kind="stable")
        logger.debug("%d x %d vectors on %s for exact torch search", *vectors.shape, self.device)

    def __len__(self) -> int:
        return int(self.ids.size)

    def mask(self, allowed_ids: np.ndarray):
        """Boolean device tensor (n,): True on rows whose id is in ``allowed_ids``."""
        import torch

        allowed = np.asarray(allowed_ids, dtype=np.int64)
        keep = np.zeros(self.ids.size, dtype=bool)
        if allowed.size and self.ids.size:
            pos = np.searchsorted(self.ids, allowed, sorter=self._sorted)
            pos = np.minimum(pos, self.ids.size - 1)
            rows = self._sorted[pos]
            keep[rows[self.ids[rows] == allowed]] = True
        return torch.from_numpy(keep).to(self.device)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32 (nq, k), ids int64 (nq, k))``, best first; only rows in
        ``allowed_ids`` (when given) are ranked."""
        import torch

        q = np.ascontiguousarray(queries, dtype=np.float32)
        nq, n = q.shape[0], len(self)
        D = np.full((nq, k), -np.inf, dtype=np.float32)
        out = np.full((nq, k), -1, dtype=np.int64)
        keep = None if allowed_ids is None else self.mask(allowed_ids)
        kk = min(k, n)
        if kk == 0 or nq == 0:
            return D, out
        block = max(1, min(nq, BLOCK_SCORES // max(n, 1)))
        neg_inf = torch.tensor(float("-inf"), device=self.device)
        with torch.inference_mode():
            for start in range(0, nq, block):
                qb = torch.from_numpy(q[start:start + block]).to(self.device)
                scores = qb @ self.vectors.T  # (b, n)
                if keep is not None:
                    scores = torch.where(keep, scores, neg_inf)
                top, rows = torch.topk(scores, kk, dim=1)  # sorted, largest first
                top, rows = top.cpu().numpy(), rows.cpu().numpy()
                D[start:start + block, :kk] = top
                out[start:start + block, :kk] = np.where(np.isneginf(top), -1, self.ids[rows])
        return D, out
