"""Integrity of the committed mini-world weights: the folder exists, every file matches its sha256."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from lare2lib.models.hub import model_not_available
from lare2lib.models.refs import ModelRef, mini_root

__all__ = ["check_mini_exists", "verify_mini_manifest"]


def check_mini_exists(ref: ModelRef, role: str) -> None:
    """Raise the "notebook 00 builds them" message when a ``mini:`` folder is absent."""
    if not ref.path.is_dir():
        raise model_not_available(ref, role)


def verify_mini_manifest(folders: Sequence[Path], root: Path | None = None) -> None:
    """Check the sha256 of every manifest entry under ``folders`` (no manifest: nothing to check).

    ``manifest.json`` at the mini root maps ``files: {relative path: sha256}``. A listed
    file that is missing or differs raises ``ValueError`` naming it: weights that do not match
    what notebook 00 recorded must not silently produce numbers.
    """
    root = (root or mini_root()).resolve()
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return
    files: dict[str, str] = json.loads(manifest_path.read_text()).get("files", {})
    prefixes = [_relative_prefix(Path(f).resolve(), root) for f in folders]
    for relpath, expected in sorted(files.items()):
        if not any(
            p is not None and (p == "" or relpath == p or relpath.startswith(p + "/"))
            for p in prefixes
        ):
            continue
        file = root / relpath
        if not file.is_file():
            raise ValueError(
                f"mini weights: {file} is listed in {manifest_path} but missing; rerun notebook 00 (RETRAIN=True)"
            )
        actual = _sha256(str(file), *_stat_key(file))
        if actual != expected:
            raise ValueError(
                f"mini weights: sha256 of {relpath} is {actual[:12]}…, manifest says {expected[:12]}… "
                f"({manifest_path}); the file was changed or corrupted: restore it from git "
                "or rebuild with notebook 00 (RETRAIN=True)"
            )


def _relative_prefix(folder: Path, root: Path) -> str | None:
    with contextlib.suppress(ValueError):
        rel = folder.relative_to(root).as_posix()
        return "" if rel == "." else rel
    return None


def _stat_key(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=256)
def _sha256(file: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, cached per (path, mtime, size) so repeated loads do not rehash."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
