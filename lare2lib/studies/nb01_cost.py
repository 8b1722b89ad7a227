"""What LaRE costs, measured against its alternatives on one model in one run.

LaRE's cost claims are best checked as *ratios* between variants that run on the same weights, the same
images and the same machine, so that a change of hardware or load moves them little:

====================  ===========================================  ================================
ratio                 numerator / denominator                      target
====================  ===========================================  ================================
LaRE vs DIRE          batched LaRE / DIRE-style 20 + 20 DDIM       ≥ 8× (the paper's Fig. 1)
batched vs per-image  the extraction driver / the released loop    ≥ 3× on CPU
extraction vs bare    the driver / ``vae.encode`` + one UNet       ≥ 0.85 (loading hidden behind
                      forward on B·K latents, tensors in memory    compute)
====================  ===========================================  ================================

Like is compared with like: LaRE and DIRE both run from pixel tensors already in memory (pure
model cost); the driver (:func:`lare2lib.signals.extract.extract_to_store`: PNG decode in a DataLoader,
squash, extraction, feature store) and the released per-image loop both start from files.

Every variant runs ``warmup`` times untimed (lazy initialisation, allocator and cache warm-up
must not count against the first one measured), then ``repeats`` times, round-robin over the
variants so that a change of load hits all of them alike; the **fastest** run is kept, as
``timeit`` does: on a shared machine the fastest run is the one other processes disturbed least. :mod:`bench/bench_lare.py` and notebook 01 both call :func:`compare_costs`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.signals.extract import extract_to_store
from lare2lib.signals.lare import (
    LareExtractor,
    pixels_from_image,
    prompt_for,
    reference_lare_per_image,
)

__all__ = [
    "CostReport",
    "Timing",
    "compare_costs",
    "measure",
    "measure_interleaved",
    "write_png_records",
]

Record = tuple[str, str, str | None]
"""``(image id, PNG path, class name)``: what the extraction driver reads."""


@dataclass(frozen=True)
class Timing:
    """Wall times of the timed runs of one variant over the same ``images``."""

    name: str
    images: int
    """Images processed per run."""
    seconds: tuple[float, ...]
    """One entry per timed run (warm-up runs excluded)."""

    @property
    def best_seconds(self) -> float:
        return min(self.seconds)

    @property
    def images_per_second(self) -> float:
        """Throughput of the fastest run."""
        return self.images / self.best_seconds

    @property
    def spread(self) -> float:
        """Median over fastest run time, minus 1: how much the load disturbed the repeats."""
        return statistics.median(self.seconds) / self.best_seconds - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "seconds": list(self.seconds),
                "images_per_second": self.images_per_second, "spread": self.spread}


def measure(name: str, run: Callable[[], Any], images: int, *, repeats: int = 3,
            warmup: int = 1) -> Timing:
    """Run ``run`` ``warmup`` times untimed, then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return Timing(name, images, tuple(seconds))


def measure_interleaved(plan: dict[str, tuple[Callable[[], Any], int]], *, repeats: int = 3,
                        warmup: int = 1, progress: bool = False) -> dict[str, Timing]:
    """:func:`measure` for several variants (name → (run, images)), repeats taken round-robin.

    Every variant is warmed up first; then each round times every variant once. A change of
    load during the measurement (another job starting) then hits all variants alike instead
    of whichever happened to run at that moment.
    """
    from tqdm.auto import tqdm

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for run, _ in plan.values():
        for _ in range(warmup):
            run()
    seconds: dict[str, list[float]] = {name: [] for name in plan}
    for _ in tqdm(range(repeats), desc="cost rounds", disable=not progress):
        for name, (run, _) in plan.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(name, count, tuple(seconds[name])) for name, (_, count) in plan.items()}


@dataclass
class CostReport:
    """All timings of one :func:`compare_costs` call and the ratios that compare them."""

    timings: dict[str, Timing]
    """``lare``, ``dire``, ``driver``, ``bare``, ``per_image``: see :func:`compare_costs`."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Batch size, K, DIRE steps, threads, device: what the numbers depend on."""

    def ips(self, name: str) -> float:
        return self.timings[name].images_per_second

    @property
    def lare_vs_dire_speedup(self) -> float:
        return self.ips("lare") / self.ips("dire")

    @property
    def batched_vs_per_image_speedup(self) -> float:
        return self.ips("driver") / self.ips("per_image")

    @property
    def extraction_vs_bare_ratio(self) -> float:
        return self.ips("driver") / self.ips("bare")

    @property
    def lare_images_per_second(self) -> float:
        """End-to-end throughput: files in, maps in the feature store."""
        return self.ips("driver")

    def ratios(self) -> dict[str, float]:
        return {"lare_vs_dire_speedup": self.lare_vs_dire_speedup,
                "batched_vs_per_image_speedup": self.batched_vs_per_image_speedup,
                "extraction_vs_bare_ratio": self.extraction_vs_bare_ratio,
                "lare_images_per_second": self.lare_images_per_second}

    def to_dict(self) -> dict[str, Any]:
        return {**self.ratios(), "settings": dict(self.settings),
                "timings": {name: timing.to_dict() for name, timing in self.timings.items()}}

    def table(self):
        """One row per variant: what it times, images/s, and its spread over the repeats."""
        import pandas as pd

        rows = [{"variant": name, "what": VARIANTS[name], "images": t.images,
                 "images/s": t.images_per_second, "spread": t.spread}
                for name, t in self.timings.items()]
        return pd.DataFrame(rows).set_index("variant")


VARIANTS = {
    "lare": "LaRE, batched, pixels in memory",
    "dire": "DIRE-style DDIM inversion + reconstruction, batched, pixels in memory",
    "driver": "LaRE driver: PNG decode (DataLoader), squash, extract, feature store",
    "bare": "vae.encode + one UNet forward on B·K latents, tensors in memory",
    "per_image": "released per-image loop: open PNG, prompt embedded per image, K draws",
}
"""What each timed variant covers."""


def write_png_records(pixels: torch.Tensor, image_ids: Sequence[str],
                      class_names: Sequence[str | None], folder: str | Path) -> list[Record]:
    """uint8 ``(N, 3, H, W)`` images → lossless PNGs in ``folder`` → driver records."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (image, image_id, class_name) in enumerate(zip(pixels, image_ids, class_names)):
        path = folder / f"{index:06d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        records.append((image_id, str(path), class_name))
    return records


def _load_batches(records: Sequence[Record], config: LareConfig, batch_size: int,
                  known_classes: Sequence[str]) -> list[tuple[torch.Tensor, list[str], list[str]]]:
    from PIL import Image

    batches = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        pixels = []
        for _, path, _ in chunk:
            with Image.open(path) as image:
                pixels.append(pixels_from_image(image, config.image_size))
        prompts = [prompt_for(config.prompt, name, known_classes, config.article) for _, _, name in chunk]
        batches.append((torch.stack(pixels), [r[0] for r in chunk], prompts))
    return batches


def _bare_forward(components, config: LareConfig, batches) -> Callable[[], None]:
    """``vae.encode`` + one UNet forward on B·K latents: the model's cost, nothing else."""
    device, dtype = components.device, components.dtype
    tensors = []
    for pixels, _, prompts in batches:
        states = components.encode_prompts(prompts).repeat_interleave(config.ensemble, dim=0)
        timesteps = torch.full((len(prompts) * config.ensemble,), config.timestep, device=device)
        tensors.append((pixels.to(device, dtype), states, timesteps))

    @torch.inference_mode()
    def run() -> None:
        for pixels, states, timesteps in tensors:
            encoded = components.vae.encode(pixels)
            latents = (encoded.latent_dist.sample() if hasattr(encoded, "latent_dist")
                       else encoded.latents) * components.scaling_factor
            components.unet(latents.repeat_interleave(config.ensemble, dim=0), timesteps,
                            encoder_hidden_states=states)
    return run


def _driver(components, config: LareConfig, records, batch_size: int, num_workers: int,
            seed: int) -> Callable[[], None]:
    from lare2lib.data.store import FeatureStore

    def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            store = FeatureStore(folder, {"bench": "lare"})
            extract_to_store(LareExtractor(components, config, seed=seed), components, records,
                             store, config, batch_size=batch_size, num_workers=num_workers,
                             progress=False)
    return run


def _per_image_loop(components, config: LareConfig, records, seed: int) -> Callable[[], None]:
    from PIL import Image

    known = tuple(getattr(components, "class_names", ()) or ())

    def run() -> None:
        for image_id, path, class_name in records:
            with Image.open(path) as image:
                reference_lare_per_image(components, image, image_id,
                                         prompt_for(config.prompt, class_name, known, config.article), config,
                                         seed=seed)
    return run


def _in_memory(extractor, batches) -> Callable[[], None]:
    def run() -> None:
        for pixels, ids, prompts in batches:
            extractor(pixels, ids, prompts)
    return run


def compare_costs(components, records: Sequence[Record], config: LareConfig = LareConfig(), *,
                  batch_size: int = 32, dire_steps: int = 20, dire_images: int | None = None,
                  per_image_images: int | None = None, repeats: int = 3, warmup: int = 1,
                  num_workers: int = 0, seed: int = 0, progress: bool = True) -> CostReport:
    """Time the five variants of :data:`VARIANTS` on ``records`` (PNG files) and one model.

    ``dire_images`` and ``per_image_images`` time the two slow variants on the first few
    records only (images/s is what is compared). ``num_workers`` are the driver's decoding
    processes: on a 2-core machine 0 (decode in the main process) is usually fastest.
    """

    from lare2lib.signals.dire import DireExtractor

    known = tuple(getattr(components, "class_names", ()) or ())
    batches = _load_batches(records, config, batch_size, known)
    dire_records = list(records[:dire_images or len(records)])
    loop_records = list(records[:per_image_images or len(records)])
    dire_batches = _load_batches(dire_records, config, batch_size, known)
    dire = DireExtractor(components, config, seed=seed, steps=dire_steps)
    plan = {
        "lare": (_in_memory(LareExtractor(components, config, seed=seed), batches), len(records)),
        "dire": (_in_memory(dire, dire_batches), len(dire_records)),
        "driver": (_driver(components, config, records, batch_size, num_workers, seed),
                   len(records)),
        "bare": (_bare_forward(components, config, batches), len(records)),
        "per_image": (_per_image_loop(components, config, loop_records, seed), len(loop_records)),
    }
    timings = measure_interleaved(plan, repeats=repeats, warmup=warmup, progress=progress)
    settings = {"batch_size": batch_size, "ensemble": config.ensemble,
                "timestep": config.timestep, "image_size": config.image_size,
                "dire_steps": dire_steps, "dire_network_passes": 2 * dire_steps,
                "repeats": repeats, "warmup": warmup, "num_workers": num_workers,
                "torch_threads": torch.get_num_threads(), "device": str(components.device),
                "dtype": str(components.dtype).removeprefix("torch."),
                "model": getattr(components, "name", "")}
    return CostReport(timings, settings)
