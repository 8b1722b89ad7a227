"""Run stamps: what a notebook's run depended on, so an unchanged notebook can be skipped.

A stamp ``runs/<label>/<stem>.stamp.json`` beside the executed copy records the hashes of the
run's inputs (the notebook's cells, the library sources and the committed weights manifest,
the profile, the parameters, the ``metrics.json`` of every notebook before it) and of the
``metrics.json`` the run wrote. :func:`up_to_date` compares a stamp with the current inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.core.plotting import METRICS_FILENAME
from lare2lib.pipeline.locations import output_dir

__all__ = [
    "cell_source",
    "sha256_file",
    "notebook_sha256",
    "library_sha256",
    "upstream_metrics",
    "up_to_date",
    "write_stamp",
]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    """SHA-256 of the file's bytes; ``None`` when there is no such file."""
    return _sha256_bytes(path.read_bytes()) if path.is_file() else None


def notebook_sha256(path: Path) -> str:
    """Hash of the cells' types and sources: outputs saved by JupyterLab do not count."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [(cell["cell_type"], cell_source(cell)) for cell in notebook.get("cells", [])]
    return _sha256_bytes(json.dumps(cells).encode())


def cell_source(cell: Mapping[str, Any]) -> str:
    """A notebook cell's source as one string (nbformat allows a list of lines too)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def library_sha256() -> str:
    """Hash of every ``lare2lib`` source file and the committed mini weights manifest."""
    package = paths.package_dir()
    files = sorted(package.rglob("*.py"))
    manifest = paths.weights_dir() / "mini" / "manifest.json"
    if manifest.is_file():
        files.append(manifest)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def upstream_metrics(
    path: Path, available: Sequence[Path], label: str, out_root: Any
) -> dict[str, str | None]:
    """Hash of each earlier notebook's ``metrics.json`` (``None`` when it has none yet)."""
    earlier = available[: available.index(path)]
    return {
        other.stem: sha256_file(output_dir(other.stem, label, out_root) / METRICS_FILENAME)
        for other in earlier
    }


def up_to_date(stamp_path: Path, inputs: Mapping[str, Any], executed: Path, out_dir: Path) -> bool:
    """Whether the stamp records these ``inputs`` and the outputs are still the ones it wrote."""
    stamp = _read_json(stamp_path)
    return (
        stamp is not None
        and stamp.get("inputs") == json.loads(json.dumps(inputs))
        and executed.is_file()
        and stamp.get("metrics_sha256") == sha256_file(out_dir / METRICS_FILENAME)
    )


def write_stamp(stamp_path: Path, inputs: Mapping[str, Any], out_dir: Path) -> None:
    """Record a successful run: its ``inputs`` and the hash of the ``metrics.json`` it wrote."""
    stamp = {"inputs": inputs, "metrics_sha256": sha256_file(out_dir / METRICS_FILENAME)}
    _write_json(stamp_path, stamp)
