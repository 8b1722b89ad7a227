"""Reconstructions at native resolution: cut to the autoencoder's multiple, batch by size, encode
(KL posterior sample seeded per image id), decode, quantise to uint8.

A reconstruction depends only on (seed, image id) and the image, never on the batch it was
computed in: images are batched by size bucket, and the KL noise of an image is drawn on the
CPU from its own generator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lare2lib.data import transforms
from lare2lib.data.imagesets import to_uint8
from lare2lib.detectors.recon_classifier.pixels import from_pil, to_pil

__all__ = [
    "RECON_STREAM",
    "downsampling_factor",
    "cut_to_multiple",
    "size_buckets",
    "encode_for_reconstruction",
    "decode_reconstruction",
    "reconstruct_images",
    "reconstruction_speed",
]

RECON_STREAM = "recon"
"""Stream of the KL posterior sample; the same as :func:`lare2lib.world.autoencoder_training.reconstruct`, so a
folder of the world's images reconstructs to the world's cached reconstruction sets."""


def downsampling_factor(ae: nn.Module) -> int:
    """Pixels per latent along a side: 2^(levels-1) for diffusers autoencoders, 8 for TAEF2."""
    from lare2lib.models.autoencoders import is_taef2

    if is_taef2(ae):
        from lare2lib.models.taef2 import TAEF2_SCALE_FACTOR

        return TAEF2_SCALE_FACTOR
    return 2 ** (len(ae.config.block_out_channels) - 1)



def cut_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """uint8 ``(3, H, W)`` centre-cropped to sides divisible by ``multiple`` (:func:`transforms.cut_to_multiple`)."""
    height, width = image.shape[-2:]
    if height % multiple == 0 and width % multiple == 0:
        return image
    return from_pil(transforms.cut_to_multiple(to_pil(image), multiple))


def size_buckets(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal ``(H, W)``, each group cut into batches of ``batch_size``.

    Buckets come in order of first appearance and keep the input order inside, so the batching
    is a function of the sizes alone.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(index)
    return [group[start:start + batch_size] for group in groups.values()
            for start in range(0, len(group), batch_size)]



def encode_for_reconstruction(ae: nn.Module, x: torch.Tensor, ids: Sequence[str], seed: int) -> torch.Tensor:
    """Unscaled latents. KL: ``mean + std · n`` with ``n`` drawn on the CPU per image id, the
    numbers :func:`lare2lib.world.autoencoder_training.seeded_latents` draws (then moved to the model's device)."""
    from lare2lib.models.autoencoders import encode_latents, is_taef2, is_vq
    from lare2lib.world.recipes import step_generator

    if is_taef2(ae) or is_vq(ae):
        return encode_latents(ae, x)
    posterior = ae.encode(x).latent_dist
    shape = tuple(posterior.mean.shape[1:])
    noise = torch.stack([torch.randn(shape, generator=step_generator(seed, RECON_STREAM, i)) for i in ids])
    return posterior.mean + posterior.std * noise.to(posterior.mean.device, posterior.mean.dtype)


def decode_reconstruction(ae: nn.Module, z: torch.Tensor, quantize: bool) -> torch.Tensor:
    """``quantize=True``: a VQ decoder quantises as its generator does (:func:`world.decode_latents`);
    ``False``: AEROBLADE's ``force_not_quantize`` (:func:`models.decode_latents`)."""
    from lare2lib.models.autoencoders import decode_latents, is_vq

    if quantize and is_vq(ae):
        return ae.decode(z).sample
    return decode_latents(ae, z)


def _quantise(images: torch.Tensor, rounding: str) -> torch.Tensor:
    if rounding == "round":
        return to_uint8(images)
    if rounding == "truncate":  # AEROBLADE's release: (x.clamp(0, 1) * 255).to(uint8)
        return ((images.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
    raise ValueError(f"rounding must be 'round' or 'truncate', got {rounding!r}")



@torch.inference_mode()
def reconstruct_images(
    ae: nn.Module,
    images: Sequence[torch.Tensor],
    image_ids: Sequence[str],
    *,
    seed: int = 0,
    batch_size: int = 16,
    quantize: bool = True,
    rounding: str = "round",
    progress: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(real images cut to the autoencoder's multiple, their reconstructions), both uint8 lists.

    ``images``: uint8 ``(3, H, W)`` of any sizes (or a ``(N, 3, H, W)`` batch). Work is done in
    size buckets of at most ``batch_size`` on the autoencoder's device; outputs are on the CPU,
    in input order.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} ids")
    param = next(ae.parameters())
    multiple = downsampling_factor(ae)
    cut = [cut_to_multiple(image, multiple) for image in images]
    recon: list[torch.Tensor | None] = [None] * len(cut)
    batches = size_buckets([tuple(image.shape[-2:]) for image in cut], batch_size)
    for batch in tqdm(batches, desc="reconstruct", disable=not progress):
        x = torch.stack([cut[i] for i in batch]).to(param.device, param.dtype) / 127.5 - 1.0
        z = encode_for_reconstruction(ae, x, [image_ids[i] for i in batch], seed)
        out = _quantise(decode_reconstruction(ae, z, quantize), rounding).cpu()
        for row, index in enumerate(batch):
            recon[index] = out[row]
    return cut, recon  # type: ignore[return-value]



@torch.inference_mode()
def reconstruction_speed(ae: nn.Module, size: int = 256, batch_size: int = 8, images: int = 32,
                         repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Images/s of :func:`reconstruct_images` on random ``size``² uint8 images (content-agnostic).

    One untimed warm-up batch, then ``repeats`` timed runs over ``images``; the fastest is kept
    (timeit's convention: on a shared machine it is the least disturbed run).
    """
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8, generator=generator)
    ids = [f"bench/{k}" for k in range(images)]
    reconstruct_images(ae, pixels[:batch_size], ids[:batch_size], batch_size=batch_size)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        reconstruct_images(ae, pixels, ids, batch_size=batch_size)
        times.append(time.perf_counter() - started)
    best = min(times)
    return {"size": size, "batch_size": batch_size, "images": images, "repeats": repeats,
            "seconds_best": best, "seconds_median": float(np.median(times)),
            "images_per_second": images / best, "threads": torch.get_num_threads()}

