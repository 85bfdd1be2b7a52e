"""Image rows of stored observations: vectors of one space, encoded metadata, labels.

:func:`load_rows` only reads. The metadata features it needs are written by whoever
adds observations to be read: ``sporeprint train`` encodes its folds' observations
(:func:`encode_missing`) and ``sporeprint score`` the batch it ingests; a row whose
observation has no features under the store's encoder is refused, not encoded here.

Example:
    >>> rows, names = load_rows(fs, "dinov2_l", fs.fold_observations(1)["val"])  # doctest: +SKIP
    >>> rows.embeddings.shape, len(names)                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sporeprint.errors import SporeprintError

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Image rows of one selection of observations."""

    image_ids: np.ndarray
    observation_ids: np.ndarray
    class_ids: np.ndarray  # -1 unknown
    embeddings: np.ndarray
    metadata: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)


def load_rows(fs, space: str, observation_ids: np.ndarray,
              labelled_only: bool = True) -> tuple[Rows, list[str]]:
    """Embeddings + metadata + labels of the images of ``observation_ids``
    (labelled or ``-1``; unlabelled observations are skipped unless
    ``labelled_only=False``, when their class is ``-1`` too), and the metadata
    column names. Reads only; see the module docstring for the features."""
    fs.require_space(space)
    table = fs.observation_images(np.asarray(observation_ids, dtype=np.int64),
                                  labelled_only=labelled_only)
    image_ids = table.column("image_id").to_numpy().astype(np.int64)
    ids, vectors = fs.fetch_embeddings(space, image_ids)
    if len(ids) < len(image_ids):
        log.warning("%d of %d images have no %r embedding and are left out",
                    len(image_ids) - len(ids), len(image_ids), space)
    pos = np.searchsorted(image_ids, ids)
    obs = table.column("observation_id").to_numpy().astype(np.int64)[pos]
    cls = table.column("class_id").to_numpy().astype(np.int64)[pos]
    meta, names = _features(fs, obs)
    return Rows(ids, obs, cls, vectors, meta), names


def _features(fs, observation_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Encoded metadata per row, in the order of ``observation_ids``."""
    uniq = np.unique(observation_ids)
    f_ids, matrix, names = fs.fetch_features(uniq)
    if len(f_ids) < len(uniq):
        missing = np.setdiff1d(uniq, f_ids)
        raise SporeprintError(
            f"{len(missing)} observations (e.g. {', '.join(str(i) for i in missing[:3])}) have "
            f"no encoded metadata under the store's encoder; encode them with `sporeprint train "
            f"--store {fs.path} ...` (it encodes what it trains and calibrates on)")
    order = np.argsort(f_ids)
    pos = np.searchsorted(f_ids[order], observation_ids)
    return matrix[order][pos], names


def encode_missing(fs, observation_ids: np.ndarray) -> int:
    """Write the features of those of ``observation_ids`` that have none under the
    store's encoder (a writable store with an encoder); returns how many were encoded."""
    uniq = np.unique(np.asarray(observation_ids, dtype=np.int64))
    if uniq.size == 0:
        return 0
    f_ids, _, _ = fs.fetch_features(uniq)
    missing = np.setdiff1d(uniq, f_ids)
    if missing.size:
        log.info("encoding metadata of %d observations", len(missing))
        fs.encode_observations(missing)
    return int(missing.size)
