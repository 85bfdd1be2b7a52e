"""The one rule for image vectors, wherever they come from (numpy, an embedding file,
a model's ``predict``): the space's dimension, and a float32 squared length that is
finite and positive. That rules out NaN, inf and all-zero vectors, and vectors too
large or too small to normalise for cosine search.

Pure numpy; needs no store, so code scoring vectors that are not stored checks them
with the same function and gets the same message.

>>> check_vectors(np.ones((2, 3), np.float32), 3, names=[10, 11])
>>> check_vectors(np.zeros((1, 3), np.float32), 3, names=[12])  # doctest: +ELLIPSIS
Traceback (most recent call last):
store.errors.InvalidValueError: vectors: vectors of images [12] (1 in all) are all zero, ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import InvalidValueError

FLOAT32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # smallest positive float32
FLOAT32_MAX = float(np.finfo(np.float32).max)

# what is wrong with the rows of each kind, and the fix; in the order they are reported
PROBLEMS = {
    "nonfinite": ("contain NaN or inf",
                  "Drop them, or record them as failures (record_embedding_failures)"),
    "zero": ("are all zero, which has no direction to compare",
             "Drop them, or record them as failures (record_embedding_failures)"),
    "scale": ("have a squared length that float32 cannot hold (it overflows to inf or "
              "underflows to 0), so they cannot be normalised for cosine search",
              "Rescale them (e.g. to unit length) or drop them"),
}

Names = Sequence | Callable[[np.ndarray], list] | None


def vector_problems(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """``{kind: row mask}`` of the rows breaking the rule (kinds of ``PROBLEMS``, each row
    under its first kind); empty when every row is fine. ``vectors``: float32 (n, d)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squares = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float32)
    bad = ~((squares >= FLOAT32_TINY) & (squares <= FLOAT32_MAX))  # NaN fails both
    if not bad.any():
        return {}
    nonfinite = bad & ~np.isfinite(vectors).all(axis=1)
    zero = bad & ~nonfinite & ~vectors.any(axis=1)
    return {kind: mask for kind, mask in (("nonfinite", nonfinite), ("zero", zero),
                                          ("scale", bad & ~nonfinite & ~zero)) if mask.any()}


def vector_message(what: str, kind: str, names: list, count: int,
                   outcome: str = "nothing was stored", fix: str | None = None) -> str:
    """One line: which images break the rule (the first few, and how many in all), how,
    what became of the input and the fix (default: the kind's fix in ``PROBLEMS``)."""
    problem, default_fix = PROBLEMS[kind]
    return (f"{what}: vectors of images {names} ({count} in all) {problem}; {outcome}. "
            f"{fix or default_fix}")


def dimension_message(what: str, shape: tuple, dim: int) -> str:
    got = shape[1] if len(shape) == 2 else "?"
    return (f"{what}: vectors have dimension {got} (shape {tuple(shape)}) but the space has "
            f"dimension {dim}, so the shape must be (n, {dim}); embed with the space's model "
            "or use a new space")


def check_vectors(vectors: np.ndarray, dim: int, names: Names = None, what: str = "vectors",
                  outcome: str = "nothing was stored", fix: str | None = None) -> None:
    """Raise :class:`~store.InvalidValueError` unless ``vectors`` is (n, ``dim``) and every
    row keeps the rule. ``names``: what to call the rows in the message, a sequence (ids or
    paths, one per row) or a function from row numbers to names; default: row numbers.
    ``outcome`` and ``fix`` end the message (a caller that stores nothing says so)."""
    shape = np.shape(vectors)
    if len(shape) != 2 or shape[1] != dim:
        raise InvalidValueError(dimension_message(what, shape, dim))
    problems = vector_problems(np.asarray(vectors, dtype=np.float32))
    if not problems:
        return
    kind, mask = next(iter(problems.items()))
    rows = np.flatnonzero(mask)[:5]
    if names is None:
        shown = rows.tolist()
    elif callable(names):
        shown = list(names(rows))
    else:
        shown = np.asarray(names)[rows].tolist()
    raise InvalidValueError(vector_message(what, kind, shown, int(mask.sum()), outcome, fix))
