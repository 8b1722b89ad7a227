"""Notebook 01's file-decoding check: the release's way of reading files against this project's
corrections, measured on LaRE maps.

The released LaRE opens files with ``Image.open(path).convert("RGB")``: the EXIF orientation is
ignored (a phone photo stored sideways is scored sideways) and transparency is dropped (the
colour under transparent pixels, often black, shows). ``LareConfig.exif_orientation`` and
``alpha="composite"`` are this project's corrections. The mini world's images never touch a file,
so the check writes held-out reals as the files a user would bring:

* ``exif``: the pixels stored rotated 90° with EXIF orientation 6 (display: rotate back), against
  the same JPEG stored upright;
* ``alpha``: a PNG whose border (an eighth of the side) is fully transparent over black, against
  the opaque PNG.

Each case is decoded both ways and its maps compared with the reference file's maps at the same
noise draws: ``relative change = mean |M − M_ref| / mean M_ref``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lare2lib.core.profiles import LareConfig
from lare2lib.data.imagesets import ImageSet

__all__ = ["SETTINGS", "write_cases", "decoding_table"]

SETTINGS: dict[str, dict[str, object]] = {
    "release": {"exif_orientation": False, "alpha": "drop"},
    "corrected": {"exif_orientation": True, "alpha": "composite"},
}
"""How each setting reads a file (the :class:`~lare2lib.core.profiles.LareConfig` fields)."""

EXIF_ORIENTATION_TAG = 0x0112
ROTATE_90_CW_TO_DISPLAY = 6
JPEG_QUALITY = 95


def write_cases(images: ImageSet, folder: str | Path) -> pd.DataFrame:
    """Write each image as the ``exif`` and ``alpha`` cases and their references; one row per
    (image, case): ``image_id, case, path, reference``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (pixels, image_id) in enumerate(zip(images.pixels, images.ids)):
        array = pixels.permute(1, 2, 0).numpy()
        upright, sideways = folder / f"{k}_upright.jpg", folder / f"{k}_exif.jpg"
        Image.fromarray(array).save(upright, quality=JPEG_QUALITY)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = ROTATE_90_CW_TO_DISPLAY
        # orientation 6 displays the stored pixels turned 90° clockwise: store them turned back
        Image.fromarray(np.ascontiguousarray(np.rot90(array, k=1))).save(sideways, quality=JPEG_QUALITY,
                                                                          exif=exif)
        opaque, transparent = folder / f"{k}_opaque.png", folder / f"{k}_alpha.png"
        Image.fromarray(array).save(opaque)
        border = max(1, array.shape[0] // 8)
        rgba = np.dstack([array, np.full(array.shape[:2], 255, np.uint8)])
        mask = np.ones(array.shape[:2], bool)
        mask[border:-border, border:-border] = False
        rgba[mask] = 0  # transparent, and black underneath (what many exporters write)
        Image.fromarray(rgba, "RGBA").save(transparent)
        rows += [{"image_id": image_id, "case": "exif", "path": sideways, "reference": upright},
                 {"image_id": image_id, "case": "alpha", "path": transparent, "reference": opaque}]
    return pd.DataFrame(rows)


def _maps(extractor, paths, image_ids, prompts, config: LareConfig) -> torch.Tensor:
    from lare2lib.data.images import load_image
    from lare2lib.signals.lare import pixels_from_image

    pixels = torch.stack([pixels_from_image(load_image(p, exif=config.exif_orientation, alpha=config.alpha),
                                            config.image_size) for p in paths])
    return extractor(pixels, list(image_ids), list(prompts)).float()


def decoding_table(components, cases: pd.DataFrame, prompts: Mapping[str, str], config: LareConfig, *,
                   seed: int = 0) -> pd.DataFrame:
    """Relative map change against the reference file, per case and setting (mean over images);
    ``prompts``: image id → its LaRE prompt.

    Every map of one image uses the same noise draws (same id, same seed), so a change comes
    from the pixels alone; the reference files are read the release's way (they have no EXIF
    tag and no alpha, so both settings read them alike).
    """
    from lare2lib.signals.lare import LareExtractor

    rows = []
    for case, group in cases.groupby("case", sort=False):
        ids = list(group.image_id)
        case_prompts = [prompts[image_id] for image_id in ids]
        extractor = LareExtractor(components, config, seed=seed)
        reference = _maps(extractor, group.reference, ids, case_prompts, config)
        scale = reference.abs().mean(dim=(1, 2, 3))
        for setting, fields in SETTINGS.items():
            variant = _maps(extractor, group.path, ids, case_prompts, replace(config, **fields))
            change = (variant - reference).abs().mean(dim=(1, 2, 3)) / scale
            rows.append({"case": case, "setting": setting, "relative_change": float(change.mean()),
                         "max_relative_change": float(change.max()), "images": len(ids)})
    return pd.DataFrame(rows)
