"""DataLoader input that never loses a bad file: error items, collation and reporting.

:class:`RecordDataset` returns an error item for a bad file instead of raising;
:func:`collate_skip_bad` separates them and :func:`iter_good_batches` records them in the main
process, so failures inside DataLoader workers are never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from PIL import Image

from lare2lib.data.images import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    DecodeReport,
    decode_image,
)
from lare2lib.data.manifests import ImageRecord
from lare2lib.data.transforms import to_tensor

__all__ = ["RecordDataset", "collate_skip_bad", "iter_good_batches"]


class RecordDataset(torch.utils.data.Dataset):
    """Decoded, transformed images of a list of records, with bad files returned as error items.

    ``__getitem__(i)`` returns ``{"pixel_values", "index", "image_id", "notes"}`` for a good file
    and ``{"error", "message", "path", "index", "image_id"}`` for a bad one (undecodable, or
    refused by the transform, e.g. ``too_small``). Errors are data, not exceptions or ``None``:
    DataLoader workers are separate processes, so anything they wrote into a report would be lost.
    :func:`collate_skip_bad` splits a batch into good and bad and :func:`iter_good_batches` records
    the bad ones in ``report`` in the main process.

    ``transform`` maps the decoded RGB image to the model input (must be picklable for workers,
    e.g. a module-level function or :func:`functools.partial`); ``report`` is where
    :func:`iter_good_batches` records outcomes by default (the dataset itself never writes to it).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Image.Image], Any] = to_tensor,
        report: DecodeReport | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.records = list(records)
        self.transform = transform
        self.report = report
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        try:
            decoded = decode_image(record.path, max_pixels=self.max_pixels)
            pixel_values = self.transform(decoded.image)
        except BadImageError as error:
            return {
                "error": error.reason,
                "message": error.message,
                "path": str(record.path),
                "index": index,
                "image_id": record.image_id,
            }
        return {"pixel_values": pixel_values, "index": index, "image_id": record.image_id, "notes": decoded.notes}


def collate_skip_bad(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch the good items of :class:`RecordDataset`; the bad ones travel along under ``"bad"``.

    Returns ``pixel_values`` (stacked, or None when every item was bad), ``index`` (long tensor),
    ``image_id`` and ``notes`` (lists), ``bad`` (list of error items).
    """
    good = [item for item in items if "error" not in item]
    bad = [item for item in items if "error" in item]
    return {
        "pixel_values": torch.utils.data.default_collate([item["pixel_values"] for item in good]) if good else None,
        "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
        "image_id": [item["image_id"] for item in good],
        "notes": [item["notes"] for item in good],
        "bad": bad,
    }


def iter_good_batches(loader: Iterable[dict[str, Any]], report: DecodeReport | None = None) -> Iterator[dict[str, Any]]:
    """Batches of a DataLoader built with :func:`collate_skip_bad`, recording outcomes in ``report``.

    ``report`` defaults to ``loader.dataset.report``. Batches in which every file was bad are
    recorded and not yielded, so callers never see an empty batch.
    """
    if report is None:
        report = getattr(getattr(loader, "dataset", None), "report", None)
    for batch in loader:
        if report is not None:
            for item in batch["bad"]:
                report.add_failure(item["path"], item["error"], item["message"], item["image_id"])
            for image_id, notes in zip(batch["image_id"], batch["notes"], strict=True):
                report.add_success(image_id, notes)
        if batch["pixel_values"] is not None:
            yield batch
