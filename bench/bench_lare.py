"""Cost of LaRE extraction, measured as ratios on one model in one run.

For each batch size, :func:`lare2lib.larecost.compare_costs` times five variants on the same
weights and images (one untimed warm-up run each, then ``--repeats`` timed runs, fastest kept):

* ``lare``: batched LaRE from pixels in memory; ``dire``: the DIRE-style baseline (20 + 20 DDIM
  passes) the same way → ``lare_vs_dire_speedup`` (paper: 8×);
* ``driver``: the whole ``extract_to_store`` path (PNG decode in a DataLoader, squash,
  extraction, feature store) against ``per_image``, the released per-image loop
  (:func:`lare2lib.lare.reference_lare_per_image`) → ``batched_vs_per_image`` (target ≥ 3× on CPU);
* ``driver`` against ``bare``: ``vae.encode`` + one UNet forward on B·K latents with tensors
  in memory → ``extraction_vs_bare`` (target ≥ 0.85).

Usage::

    python bench/bench_lare.py --model mini:kl_ldm --images 64 --batch-sizes 8 32 --out bench/results/lare_mini.json
    python bench/bench_lare.py --model /path/to/ldm_folder --images-from random
    python bench/bench_lare.py --images 32                  # tiny random SD-shaped LDM, random images

``mini:<name>`` and mini-layout folders take their images from the mini world's held-out real
crops (``--profile smoke`` for the smoke world); other models get random PNGs of mixed sizes.
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
    """An SD-shaped LDM with random weights and small widths: KL VAE with f = 4, a 3-level
    cross-attention UNet, SD's DDPM schedule, class prompts."""
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


def random_records(folder: Path, count: int, class_names, seed: int = 0) -> list[tuple]:
    """``count`` random PNGs of mixed sizes (so squashing does real work) as driver records."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        height, width = rng.integers(48, 160, size=2)
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append((path.name, str(path), class_names[i % len(class_names)] if class_names else None))
    return records


def world_records(folder: Path, count: int, profile_name: str, seed: int = 0) -> list[tuple]:
    """``count`` held-out real crops of the mini (or smoke) world, written as PNGs."""
    from lare2lib import larecost, lareviz
    from lare2lib.profiles import get_profile
    from lare2lib.worldbuild import load_world

    world = load_world(get_profile(profile_name, seed=seed), progress=False)
    real = lareviz.subsample(world.real["test"], count, seed)
    return larecost.write_png_records(real.pixels, real.ids,
                                      [world.class_names[i] for i in real.class_index], folder)


def timed(function, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


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
    parser.add_argument("--model", help="LDM for lare2lib.models.load_ldm: mini:kl_ldm, a mini-layout "
                                        "or diffusers folder, a hub id (default: a tiny random LDM)")
    parser.add_argument("--images", type=int, default=64, help="images per measurement")
    parser.add_argument("--images-from", help="mini, smoke (the world's held-out reals) or random "
                                              "(default: the --profile world for mini-layout models)")
    parser.add_argument("--profile", default="mini", help="world of mini-layout models (mini|smoke)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--image-size", type=int, default=None,
                        help="LaRE input side (default: the world's, 64 for random images)")
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--dire-steps", type=int, default=20)
    parser.add_argument("--dire-images", type=int, default=32,
                        help="images for the (slow) DIRE measurement")
    parser.add_argument("--per-image-images", type=int, default=16,
                        help="images for the (slow) per-image loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (fastest kept)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader decoding processes")
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

    if args.threads:
        torch.set_num_threads(args.threads)
    ldm, config, image_source = _model_and_config(args)
    results: dict = {"model": args.model or "tiny-random", "images": args.images,
                     "image_source": image_source, "image_size": config.image_size,
                     "ensemble": config.ensemble, "repeats": args.repeats,
                     "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                     "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
                     "python": sys.version.split()[0], "torch": torch.__version__,
                     "batch_sizes": {}}
    from lare2lib.larecost import compare_costs

    with tempfile.TemporaryDirectory() as folder:
        if image_source == "random":
            records = random_records(Path(folder), args.images, ldm.class_names)
        else:
            records = world_records(Path(folder), args.images, image_source)
        for batch_size in args.batch_sizes:
            report = compare_costs(
                ldm, records, config, batch_size=batch_size, dire_steps=args.dire_steps,
                dire_images=args.dire_images, per_image_images=args.per_image_images,
                repeats=args.repeats, num_workers=args.workers, progress=False)
            results["batch_sizes"][str(batch_size)] = report.to_dict()
    results["load_average_after"] = os.getloadavg()[0]
    print(format_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


def _model_and_config(args):
    """The LDM, its LaRE config, and where the images come from (``random`` or a profile)."""
    from lare2lib.profiles import LareConfig

    if not args.model:
        ldm = tiny_random_ldm(args.image_size or 64)
        source = "random"
    else:
        from lare2lib.models import load_ldm

        ldm = load_ldm(args.model, device="cpu", dtype=torch.float32)
        mini_layout = args.model.startswith("mini:") or (Path(args.model) / "ldm.json").is_file()
        source = args.images_from or (args.profile if mini_layout else "random")
    size = args.image_size or (64 if source == "random" else _world_image_size(source))
    return ldm, LareConfig(image_size=size, ensemble=args.ensemble), source


def _world_image_size(profile_name: str) -> int:
    from lare2lib.profiles import get_profile

    return get_profile(profile_name).world.image_size


def format_table(results: dict) -> str:
    """One row per batch size: images/s of each variant and the three ratios."""
    title = (f"model {results['model']} · {results['images']} {results['image_source']} images "
             f"of {results['image_size']}² · K={results['ensemble']} · "
             f"{results['torch_threads']} threads · load {results['load_average']:.1f}")
    header = (f"{'batch':>5} {'LaRE':>8} {'DIRE':>8} {'driver':>8} {'bare':>8} {'loop':>8}"
              f" {'LaRE/DIRE':>9} {'batch/loop':>10} {'drv/bare':>8}   (images/s)")
    lines = [title, header]
    for batch_size, row in results["batch_sizes"].items():
        ips = {name: timing["images_per_second"] for name, timing in row["timings"].items()}
        lines.append(f"{batch_size:>5} {ips['lare']:>8.1f} {ips['dire']:>8.2f} "
                     f"{ips['driver']:>8.1f} {ips['bare']:>8.1f} {ips['per_image']:>8.1f} "
                     f"{row['lare_vs_dire_speedup']:>8.1f}× "
                     f"{row['batched_vs_per_image_speedup']:>9.1f}× "
                     f"{row['extraction_vs_bare_ratio']:>8.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
