"""Storage precision: float32 or float16 rows, with float16's rounding error measured."""

from __future__ import annotations

from typing import Any

import torch

from lare2lib.data.store.errors import StoreError

__all__ = ["STORAGE_DTYPES", "all_finite", "to_storage", "relative_rms", "merge_storage_errors"]

STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
"""On-disk precisions. float16 halves the size (a 4×32×32 LaRE map: 16 KB → 8 KB); its
rounding error is measured on every row written and kept in the report."""


def all_finite(values: torch.Tensor) -> bool:
    """No NaN or inf in ``values``: one fast norm reduction (NaN and inf propagate into it),
    and the exact element check only when the norm itself overflowed."""
    return bool(torch.isfinite(torch.linalg.vector_norm(values))) or bool(
        torch.isfinite(values).all())


def to_storage(features: torch.Tensor, storage_dtype: str, report: dict[str, Any]) -> torch.Tensor:
    """``features`` (float32) in the storage precision; for float16 the rounding error is added
    to ``report["storage_error"]`` (rows, max_abs, relative_rms and the sums behind it)."""
    if storage_dtype == "float32":
        return features
    stored = features.to(torch.float16)
    error = stored.float() - features  # exact in float32; ±inf where float16 overflowed
    error_norm = float(torch.linalg.vector_norm(error))
    if error_norm == float("inf"):  # each finite error is <= 16 (half an ulp at 65504)
        raise StoreError("features overflow float16 (|x| > 65504); use dtype='float32'")
    stats = report.setdefault(
        "storage_error", {"dtype": "float16", "rows": 0, "max_abs": 0.0, "relative_rms": 0.0,
                          "sum_sq_error": 0.0, "sum_sq_value": 0.0})
    stats["rows"] += int(features.shape[0])
    if error.numel():
        low, high = torch.aminmax(error)
        stats["max_abs"] = max(stats["max_abs"], -float(low), float(high))
    stats["sum_sq_error"] += error_norm ** 2
    stats["sum_sq_value"] += float(torch.linalg.vector_norm(features)) ** 2
    stats["relative_rms"] = relative_rms(stats)
    return stored


def relative_rms(stats: dict[str, Any]) -> float:
    """||stored - x|| / ||x|| over every value written (≈ 2^-11 / sqrt(3) for float16)."""
    return (stats["sum_sq_error"] / max(stats["sum_sq_value"], 1e-300)) ** 0.5


def merge_storage_errors(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``storage_error`` entry from the writers' entries (sums added, maxima taken)."""
    merged = {"dtype": parts[0]["dtype"], "rows": sum(p["rows"] for p in parts),
              "max_abs": max(p["max_abs"] for p in parts),
              "sum_sq_error": sum(p["sum_sq_error"] for p in parts),
              "sum_sq_value": sum(p["sum_sq_value"] for p in parts)}
    merged["relative_rms"] = relative_rms(merged)
    return merged
