"""Exceptions raised by :mod:`retrieval`."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of retrieval errors; the message names the bad value and the fix."""


class InvalidVectorsError(RetrievalError, ValueError):
    """Vectors or ids of the wrong dtype, shape or dimension, or holding NaN/inf."""


class NotFittedError(RetrievalError):
    """A detector method was called before ``fit`` (or ``calibrate``)."""
