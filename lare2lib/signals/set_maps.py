"""LaRE maps of whole in-memory image sets: prompts from class indices, pixels squashed, batched.

The studies (notebooks 01, 03, 05) and the benchmarks call :func:`lare_maps` on a world's
:class:`~lare2lib.data.imagesets.ImageSet`; the per-file extraction driver is
:mod:`lare2lib.signals.extract`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from lare2lib.core.profiles import LareConfig
from lare2lib.data.imagesets import ImageSet, to_model_range
from lare2lib.signals.lare import LareExtractor, pixels_from_image, prompt_for

__all__ = ["set_prompts", "set_pixels", "batches", "lare_maps"]


def set_prompts(images: ImageSet, class_names: Sequence[str], known_classes: Sequence[str] = (),
                policy: str = "class", article: str = "a") -> list[str]:
    """The LaRE prompt of every image: "a photo of a {class}" from its class index."""
    return [prompt_for(policy, class_names[int(i)], known_classes, article) for i in images.class_index]


def set_pixels(images: ImageSet, size: int) -> torch.Tensor:
    """uint8 images → ``(N, 3, size, size)`` in [-1, 1], squashed bicubic as the release does.

    World images already have the model's size; Pillow's resize is then an exact copy, so the
    direct conversion below gives the same numbers without a round trip through PIL.
    """
    if images.pixels.shape[-1] == images.pixels.shape[-2] == size:
        return to_model_range(images.pixels)
    from PIL import Image

    return torch.stack([pixels_from_image(Image.fromarray(p.permute(1, 2, 0).numpy()), size)
                        for p in images.pixels])


def batches(images: ImageSet, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images.subset(slice(start, start + batch_size))


def lare_maps(components, images: ImageSet, class_names: Sequence[str],
              config: LareConfig = LareConfig(), *, seed: int = 0, batch_size: int = 64,
              progress: bool = False) -> torch.Tensor:
    """``(N, C, h, w)`` float32 LaRE maps of a whole set, batched."""
    extractor = LareExtractor(components, config, seed=seed)
    maps = []
    for chunk in tqdm(list(batches(images, batch_size)), desc=f"LaRE {images.name}",
                      disable=not progress):
        prompts = set_prompts(chunk, class_names, components.class_names, config.prompt, config.article)
        maps.append(extractor(set_pixels(chunk, config.image_size), chunk.ids, prompts))
    return torch.cat(maps)
