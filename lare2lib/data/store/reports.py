"""Writers' reports: images that got no feature (with the reason) and float16 rounding error.

Each writer keeps its own ``report*.json`` (see :func:`lare2lib.data.store.layout.report_path`);
readers see them merged.
"""

from __future__ import annotations

import json
from collections.abc import Container
from pathlib import Path
from typing import Any

from lare2lib.data.store.precision import merge_storage_errors

__all__ = ["read_report", "merge_reports"]


def read_report(path: Path) -> dict[str, Any]:
    """The report at ``path``, or an empty one (``{"bad": {}}``) when there is none yet."""
    if path.is_file():
        return json.loads(path.read_text())
    return {"bad": {}}


def merge_reports(parts: list[dict[str, Any]], stored: Container[str]) -> dict[str, Any]:
    """The writers' reports ``parts`` as one: bad ids (sorted) that are not in ``stored`` (a
    retry that succeeded), and the merged ``storage_error`` if any part has one. A fresh copy."""
    bad = {image_id: reason for part in parts for image_id, reason in part["bad"].items()
           if image_id not in stored}
    merged: dict[str, Any] = {"bad": dict(sorted(bad.items()))}
    errors = [part["storage_error"] for part in parts if "storage_error" in part]
    if errors:
        merged["storage_error"] = merge_storage_errors(errors)
    return json.loads(json.dumps(merged))
