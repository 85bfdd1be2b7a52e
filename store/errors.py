"""Exceptions raised by the feature store."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed; the message names the bad value and the fix."""


class StoreLockedError(StoreError):
    """Another process holds the write lock on the store file."""
