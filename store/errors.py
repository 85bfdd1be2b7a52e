"""Exceptions raised by the feature store."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed; the message names the bad value and the fix."""


class StoreLockedError(StoreError):
    """Another process holds the lock on the store file."""


class InvalidValueError(StoreError, ValueError):
    """An argument has a value the store cannot use (e.g. a search filter's role)."""
