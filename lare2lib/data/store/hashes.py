"""Hashes that tie a store to its configuration and a shard to its inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["config_hash", "manifest_hash", "config_mismatch_message"]


def config_hash(config: dict[str, Any], length: int = 16) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys, no whitespace)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def manifest_hash(image_ids: Iterable[str], length: int = 16) -> str:
    """Order-free hash of a set of image ids (which inputs a shard was extracted from)."""
    digest = hashlib.sha256()
    for image_id in sorted(image_ids):
        digest.update(image_id.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def config_mismatch_message(path: Path, meta: dict[str, Any], config: dict[str, Any] | None) -> str:
    """Why the store at ``path`` (its ``store.json`` content ``meta``) refuses ``config``:
    both hashes and the keys whose values differ."""
    stored = meta.get("config") or {}
    given = config or {}
    changed = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
    return (f"feature store {path} was made with config hash {meta['config_hash']}, "
            f"this run's config hashes to {config_hash(config)} (keys that differ: {changed}). "
            "Write to a new folder, or open it with FeatureStore.open_read_only(path).")
