"""LaRE's squash resize (notebook 05): how resizing every image to one side interacts with resolution.

LaRE resizes every image, whatever its size, to one side (256 in SD, 64 in the mini world)
before encoding. :func:`lare_resize_study` measures the AUC of ``-mean LaRE`` for
reconstructions against reals as a function of the input side, with the released squash and
with the map computed at the native size (no resize).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lare2lib.data.imagesets import ImageSet
from lare2lib.studies.nb05_levels import ResolutionData

__all__ = ["lare_resize_study"]


def _mean_lare(components, images: ImageSet, class_names: Sequence[str], config, seed: int,
               batch_size: int) -> np.ndarray:
    from lare2lib.signals.set_maps import lare_maps

    maps = lare_maps(components, images, class_names, config, seed=seed, batch_size=batch_size)
    return maps.mean(dim=(1, 2, 3)).numpy()


def lare_resize_study(components, data: ResolutionData, class_names: Sequence[str], lare_config, *,
                      native: bool = True, native_max_side: int = 0, seed: int = 0, batch_size: int = 16,
                      bootstrap: int = 1000, progress: bool = False) -> dict[str, dict[int, dict[str, float]]]:
    """AUC of ``-mean LaRE`` (reconstructions positive) against reals, per input side.

    ``"squash"``: every image resized to ``lare_config.image_size`` as the release does (bicubic,
    whole image); ``"native"``: the map computed at the image's own size (no resize), for sides up
    to ``native_max_side`` (0: all). Returns ``{"squash": {side: lare_auc_interval dict}, "native": ...}``.
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    from lare2lib.studies.nb01_lare import lare_auc_interval

    out: dict[str, dict[int, dict[str, float]]] = {"squash": {}, "native": {}}
    for side in tqdm(data.config.lare_sides, desc="LaRE sides", disable=not progress):
        real, recon = data.sided(side)
        variants = [("squash", lare_config)]
        if native and (not native_max_side or side <= native_max_side):
            variants.append(("native", replace(lare_config, image_size=side)))
        for name, config in variants:
            scores = [_mean_lare(components, s, class_names, config, seed, batch_size) for s in (real, recon)]
            out[name][side] = lare_auc_interval(*scores, resamples=bootstrap, seed=seed)
    return out
