"""The exception raised by ``heads`` for bad input, with a message naming the fix."""

from __future__ import annotations


class HeadsError(Exception):
    """Bad input to a head, a training run or a saved model.

    Example:
        >>> raise HeadsError("space 'a' does not match the saved head's space 'b'")
        Traceback (most recent call last):
        ...
        heads.errors.HeadsError: space 'a' does not match the saved head's space 'b'
    """


class NotFittedError(HeadsError):
    """A classifier was used before ``fit`` (or ``load``)."""
