"""Cost of LaRE extraction, measured as ratios on one model in one run.

Compares, at a few batch sizes:

* LaRE (batched, through the full driver: PNG decode in a DataLoader, squash, extraction,
  feature store) against the bare model cost at the same batch: ``vae.encode`` + one UNet
  forward on B·K latents with tensors already in memory (issue 3 target: ≥ 85 %);
* LaRE batched against the released per-image loop (:func:`reference_lare_per_image`;
  target ≥ 3× on CPU);
* LaRE against the DIRE-style baseline (20 + 20 DDIM passes) on the same model (paper: 8×).

Usage::

    python bench/bench_lare.py --images 32 --out bench/lare.json            # tiny random LDM
    python bench/bench_lare.py --model mini:kl_ldm --images 256 --batch-sizes 1 8 32

Numbers depend on the machine and its load; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def tiny_random_ldm(image_size: int = 64, seed: int = 0):
    """An SD-shaped LDM with random weights and small widths (used until mini weights exist):
    KL VAE with f = 4, a 3-level cross-attention UNet, SD's DDPM schedule, class prompts."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from lare2lib.conditioning import ClassPromptEncoder
    from lare2lib.models import LDMComponents

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(32, 64, 64), latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 3, layers_per_block=1,
                        up_block_types=("UpDecoderBlock2D",) * 3, sample_size=image_size)
    unet = UNet2DConditionModel(
        sample_size=image_size // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=8, cross_attention_dim=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    classes = ("cat", "dog")
    prompts = ClassPromptEncoder(class_names=classes, dim=32, seq_len=4)
    return LDMComponents(name="tiny-random", vae=vae, unet=unet, scheduler=scheduler,
                         prompt_encoder=prompts, class_names=classes).eval()


def write_images(folder: Path, count: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``count`` random PNGs of mixed sizes (so squashing does real work) as driver records."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        height, width = rng.integers(48, 160, size=2)
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append((path.name, str(path), ("cat", "dog")[i % 2]))
    return records


def timed(function, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bench_driver(ldm, config, records, batch_size: int, workers: int) -> float:
    from lare2lib.lare import LareExtractor, extract_to_store
    from lare2lib.store import FeatureStore

    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder, {"bench": batch_size})
        extractor = LareExtractor(ldm, config)
        return timed(lambda: extract_to_store(extractor, ldm, records, store, config,
                                              batch_size=batch_size, num_workers=workers,
                                              progress=False))


@torch.inference_mode()
def bench_bare_forward(ldm, config, count: int, batch_size: int) -> float:
    """vae.encode + one UNet forward on B·K latents, pixels already in memory."""
    pixels = torch.rand(batch_size, 3, config.image_size, config.image_size) * 2 - 1
    states = ldm.encode_prompts(["a photo"] * batch_size * config.ensemble)
    t = torch.full((batch_size * config.ensemble,), config.timestep)

    def run():
        for _ in range(0, count, batch_size):
            z = ldm.vae.encode(pixels).latent_dist.sample() * ldm.scaling_factor
            ldm.unet(z.repeat_interleave(config.ensemble, 0), t, encoder_hidden_states=states)
    return timed(run)


def bench_per_image(ldm, config, records) -> float:
    from PIL import Image

    from lare2lib.lare import prompt_for, reference_lare_per_image

    def run():
        for image_id, path, class_name in records:
            with Image.open(path) as image:
                reference_lare_per_image(ldm, image, image_id,
                                         prompt_for("class", class_name, ldm.class_names), config)
    return timed(run)


def bench_dire(ldm, config, records, batch_size: int, steps: int) -> float:
    from lare2lib.dire import DireExtractor
    from lare2lib.lare import extract_to_store
    from lare2lib.store import FeatureStore

    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder, {"bench": "dire"})
        extractor = DireExtractor(ldm, config, steps=steps)
        return timed(lambda: extract_to_store(extractor, ldm, records, store, config,
                                              batch_size=batch_size, progress=False))


def _rss_mb() -> float:
    try:
        import psutil
    except ImportError:  # Linux fallback: resident pages from /proc
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process().memory_info().rss / 2**20


def bench_store_scale(count: int, shape=(4, 32, 32), chunk: int = 256, shard_size: int = 4096,
                      dtype: str = "float32") -> dict:
    """Write ``count`` LaRE-sized maps in extraction-sized chunks; RSS and time per checkpoint.

    Flat RSS and linear time show the store's cost does not grow with the number of images
    (beyond its id index, ~150 B per id).
    """
    from lare2lib.store import FeatureStore

    generator = torch.Generator().manual_seed(0)
    points = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        with FeatureStore(folder, {"bench": "store"}, shard_size=shard_size, dtype=dtype) as store:
            for first in range(0, count, chunk):
                ids = [f"dir{i % 97}/img{i:07d}.png" for i in range(first, min(first + chunk, count))]
                store.append(ids, torch.rand((len(ids), *shape), generator=generator))
                points.append({"rows": first + len(ids), "seconds": time.perf_counter() - start,
                               "rss_mb": _rss_mb()})
        write_seconds = time.perf_counter() - start
        reader = FeatureStore.open_read_only(folder)
        picks = torch.randperm(count, generator=generator)[: min(count, 2048)].tolist()
        wanted = [f"dir{i % 97}/img{i:07d}.png" for i in picks]
        read_seconds = timed(lambda: reader.get(wanted))
    return {"rows": count, "shape": list(shape), "dtype": dtype, "shard_size": shard_size,
            "write_rows_per_second": count / write_seconds,
            "random_read_rows_per_second": len(wanted) / read_seconds, "curve": points}


def plot_store_scale(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a script, not a notebook: no display
    import matplotlib.pyplot as plt

    rows = [p["rows"] for p in result["curve"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(rows, [p["seconds"] for p in result["curve"]])
    left.set(xlabel="maps written", ylabel="seconds", title="time (linear = constant throughput)")
    right.plot(rows, [p["rss_mb"] for p in result["curve"]])
    right.set(xlabel="maps written", ylabel="RSS (MB)", title="memory (flat = bounded)",
              ylim=(0, None))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="LDM reference for lare2lib.models.load_ldm "
                                        "(default: a tiny random SD-shaped model)")
    parser.add_argument("--images", type=int, default=32, help="images per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--dire-steps", type=int, default=20)
    parser.add_argument("--dire-images", type=int, default=None,
                        help="images for the (slow) DIRE measurement (default: --images)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader decoding processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--store-scale", type=int, metavar="N",
                        help="instead: write N LaRE-sized maps to a store, time and memory curve")
    parser.add_argument("--figure", type=Path, help="with --store-scale: save the curve as PNG")
    args = parser.parse_args(argv)
    if args.store_scale:
        result = bench_store_scale(args.store_scale)
        curve = result["curve"]
        print(f"store: {result['rows']} maps, {result['write_rows_per_second']:.0f} rows/s written, "
              f"{result['random_read_rows_per_second']:.0f} rows/s random reads, RSS "
              f"{curve[0]['rss_mb']:.0f} → {max(p['rss_mb'] for p in curve):.0f} MB")
        if args.figure:
            plot_store_scale(result, args.figure)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
        return 0

    from lare2lib.profiles import LareConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        from lare2lib.models import load_ldm

        ldm = load_ldm(args.model, device="cpu", dtype=torch.float32)
    else:
        ldm = tiny_random_ldm(args.image_size)
    config = LareConfig(image_size=args.image_size, ensemble=args.ensemble)
    results: dict = {"model": args.model or "tiny-random", "images": args.images,
                     "image_size": args.image_size, "ensemble": args.ensemble,
                     "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                     "python": sys.version.split()[0], "torch": torch.__version__,
                     "batch_sizes": {}}
    bench_bare_forward(ldm, config, 1, 1)  # warm-up: lazy inits must not count against any variant
    with tempfile.TemporaryDirectory() as folder:
        records = write_images(Path(folder), args.images)
        per_image = args.images / bench_per_image(ldm, config, records)
        results["per_image_loop_images_per_second"] = per_image
        for batch_size in args.batch_sizes:
            lare = args.images / bench_driver(ldm, config, records, batch_size, args.workers)
            bare = args.images / bench_bare_forward(ldm, config, args.images, batch_size)
            results["batch_sizes"][str(batch_size)] = {
                "lare_images_per_second": lare, "bare_forward_images_per_second": bare,
                "extraction_vs_bare": lare / bare, "batched_vs_per_image": lare / per_image}
        dire_records = records[: args.dire_images or args.images]
        dire_batch = max(args.batch_sizes)
        dire = len(dire_records) / bench_dire(ldm, config, dire_records, dire_batch,
                                              args.dire_steps)
        best = max(results["batch_sizes"].values(), key=lambda r: r["lare_images_per_second"])
        results["dire"] = {"batch_size": dire_batch, "steps": args.dire_steps,
                           "network_passes": 2 * args.dire_steps, "images_per_second": dire}
        results["lare_vs_dire_speedup"] = best["lare_images_per_second"] / dire
        results["batched_vs_per_image_speedup"] = best["batched_vs_per_image"]

    print(f"model {results['model']}, {args.images} images of {args.image_size}², K={args.ensemble}, "
          f"{results['torch_threads']} threads")
    print(f"{'batch':>5} {'LaRE img/s':>11} {'bare img/s':>11} {'LaRE/bare':>10} {'vs loop':>8}")
    for batch_size, row in results["batch_sizes"].items():
        print(f"{batch_size:>5} {row['lare_images_per_second']:>11.2f} "
              f"{row['bare_forward_images_per_second']:>11.2f} {row['extraction_vs_bare']:>10.2f} "
              f"{row['batched_vs_per_image']:>7.2f}×")
    print(f"per-image loop (released): {per_image:.2f} img/s")
    print(f"DIRE-style ({2 * args.dire_steps} passes, batch {dire_batch}): "
          f"{results['dire']['images_per_second']:.2f} img/s → LaRE is "
          f"{results['lare_vs_dire_speedup']:.1f}× faster")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
