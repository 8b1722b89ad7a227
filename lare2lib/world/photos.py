"""Real photographs that installed packages ship, cut into the mini world's real image sets.

No dataset host is reachable, so the mini world's "real" class comes from photos bundled with
packages: scikit-image, scikit-learn and matplotlib (pip), and, where the Debian packages are
installed, OpenCV's sample data (``opencv-doc``) and photographic wallpapers
(``lomiri-wallpapers``, ``mate-backgrounds``). They are found at run time and never copied.

The catalogue below is an allow-list: diagrams, calibration patterns, renders, cartoons,
grayscale test images and abstract wallpapers in the same folders are skipped on purpose (a
detector of *generated photos* must learn from photos). Each photo carries

* a **category** (the class the latent UNet is conditioned on, standing in for ImageNet's
  "a photo of a {class}" in LaRE), and
* a fixed **split**. Splitting is by photo, never by crop, so no photo has crops on both sides.
  The split is written down rather than hashed so that the pip-only world (8 photos) still
  has photos in every split and a photo keeps its split whichever other sources are present.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lare2lib.data.imagesets import ImageSet

__all__ = [
    "CLASS_NAMES",
    "PhotoSpec",
    "Photo",
    "SourceReport",
    "CATALOGUE",
    "find_photos",
    "make_crops",
]

CLASS_NAMES: tuple[str, ...] = ("animal", "object", "person", "plant", "scene")
"""Photo categories; class index ``i`` in the world's tensors is ``CLASS_NAMES[i]``."""


@dataclass(frozen=True)
class PhotoSpec:
    source: str
    """Which package family ships it (a key of ``_SOURCE_DIRS``)."""
    relpath: str
    """Path inside the source folder."""
    category: str
    """One of :data:`CLASS_NAMES`."""
    split: str
    """``train``, ``val`` or ``test``."""
    group: str = ""
    """Photos of the same scene (stereo pairs, neighbouring aerial shots) share a group and a split."""

    @property
    def photo_id(self) -> str:
        return f"{self.source}/{self.relpath}"


@dataclass(frozen=True)
class Photo:
    spec: PhotoSpec
    path: Path
    width: int
    height: int
    package: str
    licence: str


def _skimage_dir() -> Path | None:
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def _sklearn_dir() -> Path | None:
    try:
        import sklearn.datasets
    except ImportError:
        return None
    return Path(sklearn.datasets.__file__).parent / "images"


def _matplotlib_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    return Path(matplotlib.get_data_path()) / "sample_data"


_SOURCE_DIRS = {
    "skimage": _skimage_dir,
    "sklearn": _sklearn_dir,
    "matplotlib": _matplotlib_dir,
    "opencv-doc": lambda: Path("/usr/share/doc/opencv-doc/examples/data"),
    "wallpapers": lambda: Path("/usr/share/backgrounds"),
}

_LICENCES = {
    "skimage": ("scikit-image", "public domain / CC0 (see skimage/data/README.txt)"),
    "sklearn": ("scikit-learn", "CC-BY 2.0 (see sklearn/datasets/images/README.txt)"),
    "matplotlib": ("matplotlib", "public domain (US Navy photo)"),
    "opencv-doc": ("opencv-doc", "see /usr/share/doc/opencv-doc/copyright"),
}


def _wallpaper_licence(relpath: str) -> tuple[str, str]:
    if relpath.startswith("mate/"):
        return "mate-backgrounds", "see /usr/share/doc/mate-backgrounds/copyright"
    return "lomiri-wallpapers", "CC-BY-SA-3.0 (see /usr/share/doc/lomiri-wallpapers-16.04/copyright)"


def _specs(source: str, rows: str) -> list[PhotoSpec]:
    specs = []
    for line in rows.strip().splitlines():
        relpath, category, split, *group = line.split()
        specs.append(PhotoSpec(source, relpath, category, split, group[0] if group else ""))
    return specs


CATALOGUE: tuple[PhotoSpec, ...] = tuple(
    _specs("skimage", """
        astronaut.png        person train
        chelsea.png          animal train
        coffee.png           object test
        rocket.jpg           scene  train
        motorcycle_left.png  object train
    """)
    + _specs("sklearn", """
        china.jpg            scene  val
        flower.jpg           plant  train
    """)
    + _specs("matplotlib", """
        grace_hopper.jpg     person test
    """)
    + _specs("opencv-doc", """
        aero1.jpg            scene  train aero
        aero3.jpg            scene  train aero
        aloeL.jpg            plant  train
        apple.jpg            object val
        baboon.jpg           animal train
        board.jpg            object train
        building.jpg         scene  test
        butterfly.jpg        animal test
        chicky_512.png       animal train
        ela_original.jpg     object train
        fruits.jpg           object train
        graf1.png            scene  train
        home.jpg             scene  train
        leuvenA.jpg          scene  val
        messi5.jpg           person train
        orange.jpg           object train
        rubberwhale1.png     object test
        smarties.png         object train
        squirrel_cls.jpg     animal val
        stuff.jpg            object train
    """)
    + _specs("wallpapers", """
        Bridge_by_Sander_Klootwijk.jpg          scene  train
        Dragonfly_by_Bolly.jpg                  plant  train
        Kleiber_by_Lukas_Baubkus.jpg            animal test
        Picture_0B_by_freespace.jpg             object train
        Picture_1A_by_freespace.jpg             object train
        Wine_by_Jakkub_Mede.jpg                 scene  val
        aitzgorri_by_Aitzol_Berasategi.jpg      scene  train
        free_by_Peter_Nerlich.jpg               object train
        friends_by_Aitzol_Berasategi.jpg        animal train
        life_by_Aitzol_Berasategi.jpg           scene  test
        picosdeeuropa_by_Aitzol_Berasategi.jpg  scene  train
        seeding_by_Clements_Engelhardt.jpg      plant  val
        sunset_by_Aitzol_Berasategi.jpg         scene  train
        mate/nature/Aqua.jpg                    scene  train
        mate/nature/Blinds.jpg                  plant  train
        mate/nature/Dune.jpg                    plant  train
        mate/nature/FreshFlower.jpg             plant  test
        mate/nature/Garden.jpg                  plant  train
        mate/nature/GreenMeadow.jpg             plant  train
        mate/nature/LadyBird.jpg                animal train
        mate/nature/RainDrops.jpg               plant  val
        mate/nature/Storm.jpg                   scene  train
        mate/nature/TwoWings.jpg                plant  train
        mate/nature/YellowFlower.jpg            plant  test
    """)
)


@dataclass
class SourceReport:
    """Which photo sources this machine has, for the notebook's environment section."""

    found: dict[str, int]
    """Source → photos of the catalogue found there."""
    missing_sources: list[str]
    """Sources whose folder is absent (e.g. the Debian packages are not installed)."""
    missing_files: list[str]
    """Catalogue photos whose source exists but the file does not (or does not open)."""

    def summary(self) -> str:
        parts = [f"{name}: {count}" for name, count in self.found.items()]
        text = f"{sum(self.found.values())} photos ({', '.join(parts)})"
        if self.missing_sources:
            text += f"; sources not installed: {', '.join(self.missing_sources)}"
        if self.missing_files:
            text += f"; {len(self.missing_files)} catalogue files missing"
        return text


def find_photos(max_photos: int = 0) -> tuple[list[Photo], SourceReport]:
    """Locate the catalogue's photos on this machine (header reads only).

    A missing package or file shrinks the world and is reported, never raised: the world is
    built from whatever is there. ``max_photos`` keeps the first N in catalogue order (the
    pip-only photos come first and cover every split).
    """
    photos: list[Photo] = []
    found: dict[str, int] = {}
    missing_sources, missing_files = [], []
    for source, locate in _SOURCE_DIRS.items():
        root = locate()
        if root is None or not root.is_dir():
            missing_sources.append(source)
            continue
        found[source] = 0
        for spec in (s for s in CATALOGUE if s.source == source):
            photo = _open_photo(spec, root / spec.relpath)
            if photo is None:
                missing_files.append(spec.photo_id)
                continue
            photos.append(photo)
            found[source] += 1
    if max_photos:
        photos = photos[:max_photos]
    return photos, SourceReport(found, missing_sources, missing_files)


def _open_photo(spec: PhotoSpec, path: Path) -> Photo | None:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError):
        return None
    if spec.source == "wallpapers":
        package, licence = _wallpaper_licence(spec.relpath)
    else:
        package, licence = _LICENCES[spec.source]
    return Photo(spec, path, width, height, package, licence)


# -- crops --------------------------------------------------------------------------------


def _rng_for(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def downscaled(photo: Photo, short_side: int) -> Image.Image:
    """RGB photo with its short side reduced to ``short_side`` (never enlarged).

    Photos range from 259 to 6028 px wide; without this a 256 px crop of a 6000 px wallpaper
    is a featureless patch. Downscaling is antialiased (PIL's resize filters scale with the
    reduction factor).
    """
    with Image.open(photo.path) as image:
        image = image.convert("RGB")
        scale = short_side / min(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        return image.copy()


def crop_boxes(width: int, height: int, count: int, crop_min: int, crop_max: int,
               rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """``count`` square boxes with log-uniform sides in [crop_min, crop_max] (clipped to the image)."""
    largest = min(crop_max, width, height)
    smallest = min(crop_min, largest)
    boxes = []
    for _ in range(count):
        side = int(round(math.exp(rng.uniform(math.log(smallest), math.log(largest)))))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        boxes.append((left, top, left + side, top + side))
    return boxes


def make_crops(photos: list[Photo], *, image_size: int, short_side: int, crop_min: int,
               crop_max: int, per_photo: dict[str, int], seed: int) -> dict[str, ImageSet]:
    """Cut every photo into multi-scale square crops resized to ``image_size``.

    Returns one :class:`ImageSet` per split (``train``/``val``/``test``), uint8, with the class
    index of the photo's category and ids ``"<photo id>#<k>"``. Crop positions come from a
    generator seeded by (seed, photo id), so a photo's crops do not change when other photos
    appear or disappear.
    """
    per_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for photo in photos:
        image = downscaled(photo, short_side)
        rng = _rng_for(seed, photo.spec.photo_id)
        count = per_photo[photo.spec.split]
        for k, box in enumerate(crop_boxes(image.width, image.height, count, crop_min, crop_max, rng)):
            crop = image.crop(box).resize((image_size, image_size), Image.Resampling.LANCZOS)
            per_split[photo.spec.split].append(
                (f"{photo.spec.photo_id}#{k}", np.asarray(crop), CLASS_NAMES.index(photo.spec.category))
            )
    return {split: _to_imageset(f"real_{split}", rows) for split, rows in per_split.items()}


def _to_imageset(name: str, rows: list) -> ImageSet:
    if not rows:
        raise ValueError(f"no photos for set '{name}': install more photo sources (see find_photos)")
    ids, arrays, labels = zip(*rows)
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N,3,H,W) uint8
    return ImageSet(name=name, pixels=pixels, class_index=torch.tensor(labels), ids=list(ids))
