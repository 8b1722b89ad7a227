"""The errors a feature store raises."""

from __future__ import annotations

__all__ = ["StoreError", "StoreConfigError", "StoreLockedError"]


class StoreError(RuntimeError):
    """A store that cannot be used as asked (wrong shape, duplicate id, read-only, ...)."""


class StoreConfigError(StoreError):
    """The store on disk was made with another configuration."""


class StoreLockedError(StoreError):
    """Another live process writes to this store under the same writer name."""
