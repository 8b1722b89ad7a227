"""Image ids, records, folder scans, manifests and GenImage discovery.

* **Image ids** are paths relative to the data root in POSIX form, so ``a/img.png`` and
  ``b/img.png`` never collide (the official release keyed features by file stem and overwrote).
* **Folder scans** (:func:`scan_folder`) read sizes from headers only; files that cannot be
  opened go into a :class:`lare2lib.data.images.DecodeReport`, never silently away.
* **Manifests** (CSV or parquet) list records; reading one refuses paths that leave the data root.
* **GenImage** subsets are found by their folder shape, not by name.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lare2lib.data.images import DEFAULT_MAX_PIXELS, BadImageError, DecodeReport, probe_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ManifestError",
    "MANIFEST_COLUMNS",
    "GENIMAGE_LABELS",
    "ImageRecord",
    "scan_folder",
    "write_manifest",
    "read_manifest",
    "manifest_hash",
    "discover_genimage",
    "genimage_records",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""File suffixes :func:`scan_folder` picks up (compared case-insensitively)."""

class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message names the file, the line and the fix."""



# --------------------------------------------------------------------------------------------
# Records and folders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One input image. Everything downstream (features, predictions) is keyed by ``image_id``."""

    image_id: str
    """Path relative to the data root, POSIX form (``"sdv4/val/ai/000_sdv4_00020.png"``)."""
    path: Path
    """Absolute path of the file."""
    label: int | None = None
    """0 real, 1 generated, None unknown."""
    source: str | None = None
    """Set or generator name (a GenImage subset, ``"real"``, a mini-world generator, ...)."""
    class_name: str | None = None
    """ImageNet / photo category for the prompt ``"a photo of a {class}"``; None: class-free."""
    width: int | None = None
    """Width after EXIF orientation, from the header (None if not probed)."""
    height: int | None = None
    """Height after EXIF orientation, from the header."""


def _relative_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _iter_image_files(folder: Path, recursive: bool) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order; symlinked folders are not followed (loops)."""
    for directory, subdirectories, filenames in os.walk(folder):
        subdirectories.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(directory) / name
        if not recursive:
            return


def scan_folder(
    root: str | os.PathLike,
    label: int | None = None,
    source: str | None = None,
    recursive: bool = True,
    *,
    data_root: str | os.PathLike | None = None,
    report: DecodeReport | None = None,
    class_name_fn: Callable[[str], str | None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> list[ImageRecord]:
    """Records for the images under ``root``, sorted by image id, sizes read from headers only.

    ``image_id`` is relative to ``data_root`` (default ``root``), which must contain ``root``.
    Files whose header cannot be read (empty, not an image, too large, unreadable) and symlinks
    that resolve outside ``data_root`` are not listed: they go into ``report`` (and a warning
    names how many when no report is passed). Truncation needs a full decode and is found later.
    ``class_name_fn(file_name)`` fills ``class_name`` (e.g. :func:`lare2lib.data.imagenet.class_name_from_filename`).
    """
    root = Path(root).resolve()
    data_root = root if data_root is None else Path(data_root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} does not exist or is not a folder")
    if not root.is_relative_to(data_root):
        raise ValueError(f"scan folder {root} is not inside data_root {data_root}")
    local_report = DecodeReport() if report is None else report
    n_failed_before = local_report.n_failed
    records = []
    files = _iter_image_files(root, recursive)
    for path in tqdm(files, desc=f"scan {root.name}", unit="img", disable=not progress):
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(data_root):
                raise BadImageError(path, "escapes_root", f"symlink to {path.resolve()} outside {data_root}")
            width, height = probe_image(path, max_pixels=max_pixels)
        except BadImageError as error:
            local_report.add_error(error, image_id=_relative_id(path, data_root))
            continue
        class_name = class_name_fn(path.name) if class_name_fn else None
        records.append(ImageRecord(_relative_id(path, data_root), path, label, source, class_name, width, height))
    n_new_failures = local_report.n_failed - n_failed_before
    if report is None and n_new_failures:
        warnings.warn(
            f"scan_folder({root}): {n_new_failures} unusable files skipped; pass report= to list them", stacklevel=2
        )
    return sorted(records, key=lambda record: record.image_id)



# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


MANIFEST_COLUMNS = ("image_id", "path", "label", "source", "class_name", "width", "height")
"""Manifest columns; ``path`` is relative to the data root, ``image_id`` usually equals it."""


def _manifest_rows(records: Sequence[ImageRecord], root: Path, manifest: Path) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for record in records:
        if record.image_id in seen:
            raise ManifestError(f"{manifest}: duplicate image_id {record.image_id!r}; ids must be unique")
        seen.add(record.image_id)
        absolute = Path(record.path).resolve()
        if not absolute.is_relative_to(root):
            raise ManifestError(f"{manifest}: {absolute} is outside the data root {root}")
        row = asdict(record)
        row["path"] = _relative_id(absolute, root)
        rows.append(row)
    return rows


def _parquet_schema():
    import pyarrow as pa

    text, integer = pa.string(), pa.int64()
    types = {"label": integer, "width": integer, "height": integer}
    return pa.schema([(column, types.get(column, text)) for column in MANIFEST_COLUMNS])


def write_manifest(
    records: Sequence[ImageRecord], path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> Path:
    """Write records as CSV (or parquet when ``path`` ends in ``.parquet``), atomically.

    Paths are stored relative to ``root`` (default: the manifest's folder), so a data folder can be
    moved with its manifest. Missing values are empty CSV fields / parquet nulls.
    """
    path = Path(path)
    root = (path.parent if root is None else Path(root)).resolve()
    rows = _manifest_rows(records, root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema()), temporary)
    else:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    os.replace(temporary, path)
    return path


def _require_path_column(path: Path, columns: Sequence[str]) -> None:
    if "path" not in columns:
        raise ManifestError(f"{path}: no 'path' column; columns are {list(columns)}, expected {MANIFEST_COLUMNS}")


def _manifest_entries(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each entry; ``where`` names the CSV line or parquet row for errors."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        _require_path_column(path, table.column_names)
        for index, row in enumerate(table.to_pylist()):
            yield f"{path}:row {index}", row
        return
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        _require_path_column(path, reader.fieldnames or [])
        for row in reader:
            yield f"{path}:line {reader.line_num}", row


def _cell(value: Any) -> str | None:
    """A manifest cell as text, or None for an empty field or a null."""
    text = "" if value is None else str(value).strip()
    return text or None


def _int_cell(value: Any, column: str, where: str) -> int | None:
    text = _cell(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column!r} must be an integer, got {text!r}") from None


def _resolve_inside(root: Path, raw: str, where: str) -> Path:
    """Absolute path of a manifest entry, refusing anything that resolves outside ``root``."""
    candidate = Path(raw)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ManifestError(
            f"{where}: path {raw!r} resolves to {resolved}, outside the data root {root}. "
            "Manifest paths must stay inside the data root (no '..', absolute paths elsewhere or "
            "symlinks leading out); pass root= to read_manifest if the data root is elsewhere."
        )
    return resolved


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[ImageRecord]:
    """Records of a manifest written by :func:`write_manifest` (or by hand: only ``path`` is required).

    ``root`` is the data root (default: the manifest's folder); every path must resolve inside it,
    so a manifest cannot make the pipeline read arbitrary files. ``image_id`` defaults to the path
    as written. Raises :class:`ManifestError` naming the line (CSV) or row (parquet).
    """
    path = Path(path)
    root = (path.parent if root is None else Path(root)).resolve()
    records, seen = [], {}
    for where, row in _manifest_entries(path):
        raw = _cell(row.get("path"))
        if raw is None:
            raise ManifestError(f"{where}: empty path")
        absolute = _resolve_inside(root, raw, where)
        image_id = _cell(row.get("image_id")) or Path(raw).as_posix()
        if image_id in seen:
            raise ManifestError(f"{where}: image_id {image_id!r} already used at {seen[image_id]}")
        seen[image_id] = where
        label = _int_cell(row.get("label"), "label", where)
        if label not in (None, 0, 1):
            raise ManifestError(f"{where}: label must be 0 (real), 1 (generated) or empty, got {label}")
        records.append(
            ImageRecord(
                image_id=image_id,
                path=absolute,
                label=label,
                source=_cell(row.get("source")),
                class_name=_cell(row.get("class_name")),
                width=_int_cell(row.get("width"), "width", where),
                height=_int_cell(row.get("height"), "height", where),
            )
        )
    return records


def manifest_hash(records: Iterable[ImageRecord]) -> str:
    """sha256 of the records' content (ids, labels, sources, classes, sizes), order-independent.

    Absolute paths are left out, so the same data set hashes the same on every machine; the hash
    goes into feature-store metadata to tie features to their inputs.
    """
    rows = sorted(
        [record.image_id, record.label, record.source, record.class_name, record.width, record.height]
        for record in records
    )
    payload = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()



# --------------------------------------------------------------------------------------------
# GenImage
# --------------------------------------------------------------------------------------------


GENIMAGE_SPLITS = ("train", "val")
GENIMAGE_LABELS = {"nature": 0, "ai": 1}
"""GenImage class folders and their labels (``nature`` = real ImageNet photos)."""


def _genimage_splits(folder: Path) -> dict[str, dict[str, Path]]:
    splits = {}
    for split in GENIMAGE_SPLITS:
        classes = {name: folder / split / name for name in GENIMAGE_LABELS if (folder / split / name).is_dir()}
        if classes:
            splits[split] = classes
    return splits


def discover_genimage(root: str | os.PathLike, max_depth: int = 3) -> dict[str, dict[str, dict[str, Path]]]:
    """GenImage subsets under ``root``, found by shape ``<subset>/{train,val}/{ai,nature}``.

    No subset names are assumed. The key is the subset folder relative to ``root`` (the official
    download nests folders, e.g. ``stable_diffusion_v_1_4/imagenet_ai_0419_sdv4``), or ``root``'s
    own name if ``root`` is a subset. Returns ``{subset: {split: {"ai"|"nature": folder}}}``.
    """
    root = Path(root).resolve()
    found: dict[str, dict[str, dict[str, Path]]] = {}
    frontier = [root]
    for _ in range(max_depth + 1):
        next_frontier = []
        for folder in frontier:
            splits = _genimage_splits(folder)
            if splits:
                found[folder.name if folder == root else _relative_id(folder, root)] = splits
                continue
            next_frontier += sorted(child for child in folder.iterdir() if child.is_dir())
        frontier = next_frontier
    return dict(sorted(found.items()))


def genimage_records(
    root: str | os.PathLike,
    subset: str,
    split: str,
    *,
    report: DecodeReport | None = None,
    include_inferred_classes: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    val_classes: str | os.PathLike | Mapping[str, int] | None = None,
) -> list[ImageRecord]:
    """Records of one GenImage subset and split: ``nature`` → label 0, ``ai`` → label 1.

    Ids are relative to ``root``; ``source`` is the subset; ``class_name`` comes from the file
    name (:mod:`lare2lib.data.imagenet`), or for ``ILSVRC2012_val_*`` reals from ``val_classes``
    (a mapping file or ``{stem: index}``); None where neither gives one.
    """
    from lare2lib.data.imagenet import class_name_from_filename, load_val_classes

    if val_classes is not None and not isinstance(val_classes, Mapping):
        val_classes = load_val_classes(val_classes)

    subsets = discover_genimage(root)
    if subset not in subsets or split not in subsets[subset]:
        available = {name: sorted(splits) for name, splits in subsets.items()}
        raise ValueError(f"no GenImage {subset!r}/{split!r} under {root}; found {available}")

    def class_name_fn(name: str) -> str | None:
        return class_name_from_filename(name, include_inferred=include_inferred_classes,
                                        val_classes=val_classes)

    records = []
    for class_folder, folder in sorted(subsets[subset][split].items()):
        records += scan_folder(
            folder,
            label=GENIMAGE_LABELS[class_folder],
            source=subset,
            data_root=root,
            report=report,
            class_name_fn=class_name_fn,
            max_pixels=max_pixels,
        )
    return sorted(records, key=lambda record: record.image_id)
