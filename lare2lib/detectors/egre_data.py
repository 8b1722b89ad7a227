"""EGRE's data: (image crop, map crop under it, label) items, and cached maps and features.

Geometry (METHODS.md §2). The released code computes LaRE on the *whole* image squashed to
256×256 (a 32×32 latent map) while CLIP sees a native-resolution 224 crop, so the map and the
crop only roughly cover the same pixels. Here a crop ``(top, left, crop)`` of an ``H × W`` image
selects the map window under it, ``rows round(top·h/H) … round((top+crop)·h/H)`` (same for
columns) of the ``h × w`` map (``aligned=True``); ``aligned=False`` reproduces the release: the
whole map whatever the crop. Window sides are resampled (area / bilinear) to one common side
``round(crop·h/S)`` so items of differently sized images collate; for the mini world (64 px
images, S = 64, f = 4, crops at multiples of 4 px) every window is exact and never resampled.

Crops: training items take ``crops_per_image`` random offsets per image, drawn from
``(seed, image id)`` and snapped to the map's cell (``H / h`` pixels) so the window is exact;
evaluation takes the centre crop (also snapped). Images smaller than the crop are
reflect-padded (the release's ``PadIfNeeded(reflect)``), and their window is the whole map.

Caches (under ``<data>/egre/<world>/``, :class:`lare2lib.data.store.FeatureStore`): the maps, keyed
by the extractor's config (method, model, t, K, size, prompt, seed), and for a frozen backbone
its outputs per crop (``"<id>@<top>,<left>"``), keyed by backbone and crop size
(:func:`lare2lib.detectors.egre_splits.cache_backbone_features`). A rerun reads both instead of
recomputing; a killed extraction resumes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from lare2lib.core.rng import image_generator

__all__ = [
    "CROP_STREAM",
    "map_cell",
    "crop_offsets",
    "map_window",
    "window_side",
    "crop_map",
    "crop_pixels",
    "normalise",
    "LazyImages",
    "EgreDataset",
    "map_store",
    "tensor_records",
    "ensure_maps",
    "maps_of_images",
    "scoring_batches",
]

CROP_STREAM = "egre-crop"
"""Per-image random stream of the crop offsets (independent of LaRE's noise streams)."""


# -- geometry ---------------------------------------------------------------------------------


def map_cell(image_hw: tuple[int, int], map_hw: tuple[int, int]) -> int:
    """Pixels per map cell when the map tiles the image exactly (else 1: no snapping)."""
    (height, width), (rows, cols) = image_hw, map_hw
    if height % rows == 0 and width % cols == 0 and height // rows == width // cols:
        return height // rows
    return 1


def crop_offsets(image_id: str, image_hw: tuple[int, int], crop: int, *, count: int = 1,
                 seed: int = 0, step: int = 1, centre: bool = False) -> list[tuple[int, int]]:
    """``count`` crop positions ``(top, left)`` on multiples of ``step``.

    ``centre``: the centred crop (one position, snapped down to the step). Otherwise uniform
    random positions drawn from ``(seed, image_id)``. Sides smaller than the crop get 0 (the
    image is padded).
    """
    spans = [max(0, side - crop) for side in image_hw]
    if centre:
        return [tuple(span // 2 - (span // 2) % step for span in spans)] * count
    generator = image_generator(seed, image_id, CROP_STREAM)
    rows, cols = (span // step + 1 for span in spans)
    # distinct positions while there are enough of them (a grid of rows × cols), then repeats
    picks = torch.cat([torch.randperm(rows * cols, generator=generator)
                       for _ in range(-(-count // (rows * cols)))])[:count]
    return [(int(p // cols) * step, int(p % cols) * step) for p in picks]


def map_window(offset: tuple[int, int], crop: int, image_hw: tuple[int, int],
               map_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the map cells under the crop (at least one cell)."""
    bounds = []
    for start, side, cells in zip(offset, image_hw, map_hw):
        if side <= crop:  # padded side: the crop covers the whole image
            bounds += [0, cells]
            continue
        first = min(cells - 1, round(start * cells / side))
        bounds += [first, max(first + 1, min(cells, round((start + crop) * cells / side)))]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def window_side(crop: int, map_side: int, lare_size: int) -> int:
    """Common side of aligned windows: a crop of a ``lare_size`` image covers this many cells."""
    return max(1, round(min(crop, lare_size) * map_side / lare_size))


def crop_map(error_map: torch.Tensor, offset: tuple[int, int], crop: int,
             image_hw: tuple[int, int], side: int, aligned: bool = True) -> torch.Tensor:
    """The ``(C, side, side)`` map window under the crop (``aligned``) or the whole map."""
    if not aligned:
        return error_map
    row0, row1, col0, col1 = map_window(offset, crop, image_hw, tuple(error_map.shape[-2:]))
    window = error_map[:, row0:row1, col0:col1]
    if window.shape[-2:] != (side, side):  # only for images of another size than the world's
        window = F.interpolate(window[None], size=(side, side), mode="bilinear",
                               align_corners=False, antialias=True)[0]
    return window


def crop_pixels(pixels: torch.Tensor, offset: tuple[int, int], crop: int) -> torch.Tensor:
    """uint8 ``(3, crop, crop)`` at ``offset``; sides smaller than the crop are reflect-padded
    (centred, no edge repeat: ``BORDER_REFLECT_101`` as albumentations' ``PadIfNeeded``)."""
    height, width = pixels.shape[-2:]
    if height < crop or width < crop:
        pad_y, pad_x = max(0, crop - height), max(0, crop - width)
        array = np.pad(pixels.numpy(), ((0, 0), (pad_y // 2, pad_y - pad_y // 2),
                                        (pad_x // 2, pad_x - pad_x // 2)), mode="reflect")
        pixels = torch.from_numpy(array)
    top, left = offset
    return pixels[:, top:top + crop, left:left + crop]


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(..., 3, h, w)`` → float32 ``(x / 255 - mean) / std`` (the backbone's normalisation)."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (pixels.float() / 255.0 - mean_t) / std_t


# -- images -----------------------------------------------------------------------------------


class LazyImages(Sequence):
    """Image files decoded on access (``uint8 (3, H, W)``), for sets too large for memory."""

    def __init__(self, records: Sequence):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        from lare2lib.data.images import load_image

        image = np.asarray(load_image(self.records[index].path), dtype=np.uint8)
        return torch.from_numpy(image.copy()).permute(2, 0, 1)

    def size(self, index: int) -> tuple[int, int]:
        record = self.records[index]
        if record.height and record.width:
            return int(record.height), int(record.width)
        return tuple(self[index].shape[-2:])


def _image_sizes(images) -> list[tuple[int, int]]:
    if isinstance(images, torch.Tensor):
        return [tuple(images.shape[-2:])] * len(images)
    if isinstance(images, LazyImages):
        return [images.size(i) for i in range(len(images))]
    return [tuple(image.shape[-2:]) for image in images]


# -- the dataset ------------------------------------------------------------------------------


class EgreDataset(Dataset):
    """Items ``{"image", "lare", "label"}`` (or cached ``feature_map``/``global`` for ``image``).

    Args:
        images: uint8 ``(N, 3, H, W)`` tensor, a list of ``(3, H, W)`` tensors, or :class:`LazyImages`.
        ids: Image ids (key the maps and the crop draws).
        labels: 0 real / 1 generated, per image.
        maps: ``(N, C, h, w)`` float32 error maps of the whole (squashed) images.
        crop: Image crop side; ``lare_size``: the side images were squashed to for the maps.
        mean, std: The backbone's input normalisation.
        aligned: Map window under the crop (True) or the whole map (False, released).
        train: Random crops (``crops_per_image`` items per image) or one centre crop.
        seed: Seed of the crop draws.
        with_image: Emit ``image`` (False for variants that read no pixels).
    """

    def __init__(self, images, ids: Sequence[str], labels: Sequence[int], maps: torch.Tensor, *,
                 crop: int, lare_size: int, mean: Sequence[float], std: Sequence[float],
                 aligned: bool = True, train: bool = False, crops_per_image: int = 1,
                 seed: int = 0, with_image: bool = True):
        if not (len(images) == len(ids) == len(labels) == len(maps)):
            raise ValueError(f"images ({len(images)}), ids ({len(ids)}), labels ({len(labels)}) "
                             f"and maps ({len(maps)}) differ in length")
        self.images, self.ids = images, list(ids)
        self.image_labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.maps = maps
        self.crop, self.lare_size = int(crop), int(lare_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.aligned, self.with_image = aligned, with_image
        self.sizes = _image_sizes(images)
        map_hw = tuple(maps.shape[-2:])
        self.window = window_side(self.crop, map_hw[0], self.lare_size)
        self.items: list[tuple[int, int, int]] = []  # (image row, top, left)
        for row, (image_id, size) in enumerate(zip(self.ids, self.sizes)):
            offsets = crop_offsets(image_id, size, self.crop, count=crops_per_image if train else 1,
                                   seed=seed, step=map_cell(size, map_hw), centre=not train)
            self.items += [(row, top, left) for top, left in offsets]
        self.features: torch.Tensor | None = None
        self.feature_shape: tuple[int, int, int] | None = None

    @property
    def labels(self) -> torch.Tensor:
        """Label per item (what :func:`lare2lib.detectors.train.fit` balances on)."""
        return self.image_labels[[row for row, _, _ in self.items]]

    def item_ids(self) -> list[str]:
        """``"<image id>@<top>,<left>"`` per item: the key of its cached backbone features."""
        return [f"{self.ids[row]}@{top},{left}" for row, top, left in self.items]

    def options(self, *, maps: torch.Tensor | None = None, aligned: bool | None = None,
                with_image: bool | None = None) -> "EgreDataset":
        """A copy sharing images, items and cached features, with other maps / alignment."""
        other = copy.copy(self)
        if maps is not None:
            if maps.shape[0] != len(self.ids):
                raise ValueError(f"{maps.shape[0]} maps for {len(self.ids)} images")
            other.maps = maps
        other.aligned = self.aligned if aligned is None else aligned
        other.with_image = self.with_image if with_image is None else with_image
        return other

    def __len__(self) -> int:
        return len(self.items)

    def crop_image(self, index: int) -> torch.Tensor:
        """uint8 ``(3, crop, crop)`` of item ``index`` (for pictures and feature caching)."""
        row, top, left = self.items[index]
        return crop_pixels(self.images[row], (top, left), self.crop)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row, top, left = self.items[index]
        item = {"label": self.image_labels[row],
                "lare": crop_map(self.maps[row], (top, left), self.crop, self.sizes[row],
                                 self.window, self.aligned)}
        if not self.with_image:  # the variant reads no pixels (lare_cnn)
            return item
        if self.features is not None:
            channels, height, width = self.feature_shape
            flat = self.features[index]
            item["feature_map"] = flat[:channels * height * width].view(channels, height, width)
            item["global"] = flat[channels * height * width:]
        else:
            item["image"] = normalise(self.crop_image(index), self.mean, self.std)
        return item


# -- map extraction into a feature store --------------------------------------------------------


def lare_config(lare: Mapping[str, Any], **overrides: Any):
    """The :class:`~lare2lib.core.profiles.LareConfig` of a detector config's ``lare`` dict
    (checkpoints from before ``article`` existed wrote the release's "a")."""
    from lare2lib.core.profiles import LareConfig

    return LareConfig(timestep=lare["timestep"], ensemble=lare["ensemble"], image_size=lare["image_size"],
                      prompt=lare["prompt"], article=lare.get("article", "a"), **overrides)


def map_store(root: str | os.PathLike, extractor, model: str, prompt: str):
    """The :class:`FeatureStore` of ``extractor``'s maps under ``root``, named by its config hash."""
    from lare2lib.data.store import FeatureStore, config_hash
    from lare2lib.signals.extract import extraction_config

    config = extraction_config(extractor, model, prompt)
    return FeatureStore(Path(root) / f"{config['method']}-{config_hash(config)}", config)


def _pil_of(images, index: int) -> Callable[[], Any]:
    def load():
        from PIL import Image

        return Image.fromarray(images[index].permute(1, 2, 0).numpy())

    return load


def tensor_records(images, ids: Sequence[str],
                   class_names: Sequence[str | None]) -> list[tuple[str, Callable[[], Any], str | None]]:
    """Extraction records ``(id, () -> PIL image, class name)`` of in-memory uint8 images."""
    return [(image_id, _pil_of(images, i), name)
            for i, (image_id, name) in enumerate(zip(ids, class_names))]


def ensure_maps(store, extractor, components, records: Sequence, config, *,
                batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> torch.Tensor:
    """``(N, C, h, w)`` maps of ``records`` (:func:`tensor_records`, or image-file records),
    computing only those not in ``store``.

    Extraction goes through :func:`lare2lib.signals.extract.extract_to_store` (the whole image squashed
    to ``config.image_size``, per-image noise, durable flushes), so a killed run resumes. An
    image that cannot be decoded stops the build with its name: a training set gets no holes.
    """
    from lare2lib.signals.extract import extract_to_store

    ids = [record[0] if isinstance(record, tuple) else record.image_id for record in records]
    if store.missing(ids):
        summary = extract_to_store(extractor, components, records, store, config,
                                   batch_size=batch_size, num_workers=num_workers,
                                   progress=progress)
        if summary.bad:
            raise RuntimeError(f"{len(summary.bad)} image(s) got no map, e.g. "
                               f"{dict(list(summary.bad.items())[:3])}")
    return store.get(ids)


def _squashed(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(3, H, W)`` → ``(3, size, size)`` in [-1, 1], as LaRE's input (bicubic squash)."""
    if tuple(image.shape[-2:]) == (size, size):
        return image.float() / 127.5 - 1.0
    from PIL import Image

    from lare2lib.signals.lare import pixels_from_image

    return pixels_from_image(Image.fromarray(image.permute(1, 2, 0).numpy()), size)


def maps_of_images(extractor, images: Sequence[torch.Tensor], ids: Sequence[str],
                   class_names: Sequence[str | None], policy: str) -> torch.Tensor:
    """``(B, C, h, w)`` maps of decoded images of any size, in one extractor call."""
    from lare2lib.signals.prompts import extractor_prompts

    pixels = torch.stack([_squashed(image, extractor.image_size) for image in images])
    prompts = extractor_prompts(extractor, class_names, policy, len(images))
    return extractor(pixels, list(ids), prompts).float().cpu()


def scoring_batches(model, images: Sequence[torch.Tensor], ids: Sequence[str], maps: torch.Tensor,
                    *, tries: int = 1, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """One model batch per try: the centre crop (``tries`` = 1) or ``tries`` random crops."""
    config = model.config
    crop, lare_size = config["crop_size"], config["lare"]["image_size"]
    side = window_side(crop, maps.shape[-2], lare_size)
    device = next(model.parameters()).device
    per_image = []
    for image, image_id in zip(images, ids):
        size = tuple(image.shape[-2:])
        per_image.append(crop_offsets(image_id, size, crop, count=tries, seed=seed,
                                      step=map_cell(size, tuple(maps.shape[-2:])),
                                      centre=tries == 1))
    batches = []
    for k in range(tries):
        crops, windows = [], []
        for image, error_map, offsets in zip(images, maps, per_image):
            size = tuple(image.shape[-2:])
            crops.append(normalise(crop_pixels(image, offsets[k], crop), model.input_mean,
                                   model.input_std))
            windows.append(crop_map(error_map, offsets[k], crop, size, side, config["aligned"]))
        batches.append({"image": torch.stack(crops).to(device),
                        "lare": torch.stack(windows).to(device)})
    return batches
