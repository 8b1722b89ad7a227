"""ImageNet class names for the LaRE prompt, recovered from GenImage file names.

LaRE conditions its UNet on ``"a photo of a {class}"`` where ``class`` is the first synonym of the
image's ImageNet class (``n01440764`` → ``"tench, Tinca tinca"`` → ``"tench"``). GenImage does not
ship labels, but every subset is built from ImageNet-1k classes and the class survives in most file
names. The patterns supported here (anything else gives ``None`` and the caller falls back to the
class-free prompt ``"a photo"``):

==========================  ==========================================  ========================
file name                   where it occurs                             class
==========================  ==========================================  ========================
``n01440764_10026.JPEG``    real training images (ImageNet train)       wnid ``n01440764``
``ILSVRC2012_val_*.JPEG``   real validation images (ImageNet val)       from a mapping file
                                                                        (:func:`load_val_classes`),
                                                                        else ``None``
``000_sdv4_00020.png``      fakes of SD v1.4/v1.5, BigGAN, ADM,         leading integer = class
``0_adm_153.PNG``           Wukong, Midjourney: ``{index}_{gen}_{n}``   index 0..999
``0_wukong_image128.png``
``GLIDE_1000_200_00_017_``  fakes of GLIDE and VQDM:                    fifth field = class
``glide_00086.png``         ``{GEN}_1000_{n}_{batch}_{index}_{gen}_..`` index (inferred, see below)
==========================  ==========================================  ========================

The leading-integer form is what GenImage's generation scripts write (class index, generator tag,
sample number). The GLIDE/VQDM form carries ``1000`` (the number of classes) and a per-class
count, followed by a batch number and a three-digit field that takes values 000..999; reading that
field as the class index is an inference from the names, not documented by the dataset, so it can be
switched off with ``include_inferred=False``.

Indices follow the standard ImageNet-1k order (sorted wnids, ``0 = n01440764 tench``), read from
the metadata files timm ships for :class:`timm.data.ImageNetInfo`, so no download is needed.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

__all__ = [
    "NUM_CLASSES",
    "FilenamePattern",
    "GENIMAGE_FILENAME_PATTERNS",
    "wnid_to_index",
    "index_to_wnid",
    "class_name",
    "class_index_from_filename",
    "class_name_from_filename",
    "load_val_classes",
]

NUM_CLASSES = 1000
"""ImageNet-1k: every GenImage subset samples these classes."""


@dataclass(frozen=True)
class FilenamePattern:
    """One way a GenImage file name encodes its ImageNet class."""

    name: str
    """Short name used in docs and tests."""
    regex: re.Pattern[str]
    """Matched against the file stem; group ``wnid`` or ``index`` holds the class."""
    inferred: bool = False
    """True when the meaning of the field is read off the names rather than documented."""


GENIMAGE_FILENAME_PATTERNS: tuple[FilenamePattern, ...] = (
    FilenamePattern("imagenet_train", re.compile(r"^(?P<wnid>n\d{8})_\d+$")),
    FilenamePattern("index_generator_sample", re.compile(r"^(?P<index>\d{1,4})_[A-Za-z][A-Za-z0-9]*_")),
    FilenamePattern(
        "glide_vqdm",
        re.compile(r"^(?:GLIDE|VQDM)_1000_\d+_\d+_(?P<index>\d{1,4})_", re.IGNORECASE),
        inferred=True,
    ),
)
"""Tried in order; ``ILSVRC2012_val_00000008`` matches none of them on purpose (no class)."""


def _timm_info_file(name: str) -> Path | None:
    """A metadata file bundled with timm, located without importing timm (a 2 s import)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), "data", "_info", name)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _metadata() -> tuple[tuple[str, ...], dict[str, str]]:
    """(wnids in ImageNet-1k index order, wnid → comma-separated synonyms), from timm's files.

    These are the files :class:`timm.data.ImageNetInfo` reads; if a timm release moves them, the
    class itself is used instead.
    """
    synsets, lemmas = _timm_info_file("imagenet_synsets.txt"), _timm_info_file("imagenet_synset_to_lemma.txt")
    if synsets is None or lemmas is None:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-1k")
        wnids = tuple(info.label_names())
        return wnids, {wnid: info.label_name_to_description(wnid) for wnid in wnids}
    wnids = tuple(synsets.read_text().split())
    wanted = set(wnids)
    descriptions = {}
    for line in lemmas.read_text().splitlines():
        wnid, _, lemma = line.partition("\t")
        if wnid in wanted:
            descriptions[wnid] = lemma
    return wnids, descriptions


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(_metadata()[0])}


def wnid_to_index(wnid: str) -> int | None:
    """ImageNet-1k index of a wnid (``"n01440764"`` → 0), or None for wnids outside the 1k set."""
    return _wnid_index().get(wnid)


def index_to_wnid(index: int) -> str:
    """The wnid of an ImageNet-1k index; raises ``IndexError`` outside 0..999."""
    if not 0 <= index < NUM_CLASSES:
        raise IndexError(f"ImageNet-1k class index must be in 0..{NUM_CLASSES - 1}, got {index}")
    return _metadata()[0][index]


def class_name(label: int | str) -> str:
    """First synonym of an ImageNet class, as LaRE puts it in its prompt.

    ``label`` is an index (0..999) or a wnid. ``0`` → ``"tench"``, ``"n02123045"`` → ``"tabby"``.
    Note that two classes share the name ``"crane"`` (bird and machine), as in LaRE.
    """
    wnid = index_to_wnid(label) if isinstance(label, int) else label
    if wnid_to_index(wnid) is None:
        raise KeyError(f"{wnid!r} is not an ImageNet-1k wnid (expected e.g. 'n01440764')")
    return _metadata()[1][wnid].split(",")[0].strip()


def load_val_classes(path: str | PurePath) -> dict[str, int]:
    """ImageNet-1k index of each validation image, keyed by file stem (``ILSVRC2012_val_00000001``).

    Reads the release's ``anns/filename_to_folder.json`` (file name → class folder, i.e. a wnid,
    or an index) or Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose first
    word is the wnid). Unknown wnids and malformed rows raise, naming the file.
    """
    import csv
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"val class mapping {path} not found")
    if path.suffix.lower() == ".json":
        pairs = json.loads(path.read_text()).items()
    else:
        with path.open(newline="") as handle:
            pairs = [(row["ImageId"], row["PredictionString"].split()[0]) for row in csv.DictReader(handle)]
    mapping = {}
    for name, label in pairs:
        index = _val_label(label)
        if index is None or not 0 <= index < NUM_CLASSES:
            raise ValueError(f"{path}: {name!r} maps to {label!r}, not an ImageNet-1k class")
        mapping[PurePath(name).stem] = int(index)
    return mapping


def _val_label(label: int | str) -> int | None:
    """An index (``65`` or ``"65"``) or anything holding a wnid (``"n01751748"``, ``"val/n01751748"``)."""
    if isinstance(label, int) or str(label).isdigit():
        return int(label)
    found = re.search(r"n\d{8}", str(label))
    return wnid_to_index(found.group(0)) if found else None


def class_index_from_filename(filename: str | PurePath, *, include_inferred: bool = True,
                              val_classes: dict[str, int] | None = None) -> int | None:
    """ImageNet-1k index encoded in a GenImage file name, or None when it carries no class.

    Only the file name is looked at (folders are ignored). See the module docstring for the
    supported patterns; ``include_inferred=False`` ignores the GLIDE/VQDM guess;
    ``val_classes`` (:func:`load_val_classes`) gives the classes names do not carry.
    """
    stem = PurePath(filename).stem
    if val_classes and stem in val_classes:
        return val_classes[stem]
    for pattern in GENIMAGE_FILENAME_PATTERNS:
        if pattern.inferred and not include_inferred:
            continue
        match = pattern.regex.match(stem)
        if match is None:
            continue
        groups = match.groupdict()
        if "wnid" in groups:
            return wnid_to_index(groups["wnid"])
        index = int(groups["index"])
        return index if index < NUM_CLASSES else None
    return None


def class_name_from_filename(filename: str | PurePath, *, include_inferred: bool = True,
                             val_classes: dict[str, int] | None = None) -> str | None:
    """Class name for ``"a photo of a {class}"`` from a GenImage file name, or None (use ``"a photo"``)."""
    index = class_index_from_filename(filename, include_inferred=include_inferred, val_classes=val_classes)
    return None if index is None else class_name(index)
