"""Cost of LaRE extraction, measured as ratios on one model in one run.

For each batch size, :func:`lare2lib.studies.nb01_cost.compare_costs` times five variants on the same
weights and images (one untimed warm-up run each, then ``--repeats`` timed runs, fastest kept):

* ``lare``: batched LaRE from pixels in memory; ``dire``: the DIRE-style baseline (20 + 20 DDIM
  passes) the same way → ``lare_vs_dire_speedup`` (paper: 8×);
* ``driver``: the whole ``extract_to_store`` path (PNG decode in a DataLoader, squash,
  extraction, feature store) against ``per_image``, the released per-image loop
  (:func:`lare2lib.signals.lare.reference_lare_per_image`) → ``batched_vs_per_image`` (target ≥ 3× on CPU);
* ``driver`` against ``bare``: ``vae.encode`` + one UNet forward on B·K latents with tensors
  in memory → ``extraction_vs_bare`` (target ≥ 0.85).

Usage::

    python bench/bench_lare.py --model mini:kl_ldm --images 64 --batch-sizes 8 32 --out bench/results/lare_mini.json
    python bench/bench_lare.py --model /path/to/ldm_folder --images-from random
    python bench/bench_lare.py --images 32                  # tiny random SD-shaped LDM, random images
    python bench/bench_lare.py --model sd15-random --images 4 --batch-sizes 4 --dire-images 2 \
        --per-image-images 4 --out bench/results/lare_sd15.json   # SD v1.5's size, 256² (CPU)
    python bench/bench_lare.py --model sd15-random --device cuda --dtype bfloat16 ...  # + bf16 map error

``sd15-random`` is Stable Diffusion v1.5's exact architecture with random weights
(:mod:`lare2lib.models.sd_architecture`): the cost at the paper's model size without a download.
With ``--dtype`` bfloat16/float16 (GPU) the variants run in that precision and the report adds
the map error against float32 (:func:`lare2lib.signals.lare.precision_error`).

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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from memory import MemorySampler  # noqa: E402  (a sibling script module)

from lare2lib.data import imagesets  # noqa: E402


def tiny_random_ldm(image_size: int = 64, seed: int = 0):
    """An SD-shaped LDM with random weights and small widths (KL VAE with f = 4, a 3-level
    cross-attention UNet, SD's DDPM schedule, class prompts): :data:`BENCH_TINY_LDM`."""
    import dataclasses

    from lare2lib.models.tiny import BENCH_TINY_LDM, tiny_ldm_components

    return tiny_ldm_components("kl", seed, dataclasses.replace(BENCH_TINY_LDM, image_size=image_size))


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
    from lare2lib.core.profiles import get_profile
    from lare2lib.studies import nb01_cost
    from lare2lib.world.build import load_world

    world = load_world(get_profile(profile_name, seed=seed), progress=False)
    real = imagesets.subsample(world.real["test"], count, seed)
    return nb01_cost.write_png_records(real.pixels, real.ids,
                                      [world.class_names[i] for i in real.class_index], folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="LDM for lare2lib.models.ldm.load_ldm: mini:kl_ldm, a mini-layout "
                                        "or diffusers folder, a hub id; sd15-random: SD v1.5's "
                                        "architecture, random weights (default: a tiny random LDM)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="precision of the timed variants (half types on GPU only)")
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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ldm, config, image_source = _model_and_config(args)
    precision = _precision(ldm, config, args.dtype)
    if precision is not None:
        ldm = _cast(ldm, getattr(torch, args.dtype))
    results: dict = {"model": args.model or "tiny-random", "images": args.images,
                     "device": args.device, "dtype": args.dtype, "precision_error": precision,
                     "image_source": image_source, "image_size": config.image_size,
                     "ensemble": config.ensemble, "repeats": args.repeats,
                     "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                     "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
                     "python": sys.version.split()[0], "torch": torch.__version__,
                     "batch_sizes": {}}
    from lare2lib.studies.nb01_cost import compare_costs

    with tempfile.TemporaryDirectory() as folder:
        if image_source == "random":
            records = random_records(Path(folder), args.images, ldm.class_names)
        else:
            records = world_records(Path(folder), args.images, image_source)
        for batch_size in args.batch_sizes:
            with MemorySampler(interval=0.2) as memory:
                report = compare_costs(
                    ldm, records, config, batch_size=batch_size, dire_steps=args.dire_steps,
                    dire_images=args.dire_images, per_image_images=args.per_image_images,
                    repeats=args.repeats, num_workers=args.workers, progress=False)
            results["batch_sizes"][str(batch_size)] = {**report.to_dict(),
                                                       "peak_memory_mb": memory.peak_mb}
    results["load_average_after"] = os.getloadavg()[0]
    print(format_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


def _model_and_config(args):
    """The LDM, its LaRE config, and where the images come from (``random`` or a profile)."""
    from lare2lib.core.profiles import LareConfig

    if not args.model:
        ldm = tiny_random_ldm(args.image_size or 64).to(args.device)
        source = "random"
    elif args.model == "sd15-random":
        from lare2lib.models.sd_architecture import sd15_random_components

        ldm = sd15_random_components(device=args.device)
        source = "random"
        return ldm, LareConfig(image_size=args.image_size or 256, ensemble=args.ensemble), source
    else:
        from lare2lib.models.ldm import load_ldm

        ldm = load_ldm(args.model, device=args.device, dtype=torch.float32)
        mini_layout = args.model.startswith("mini:") or (Path(args.model) / "ldm.json").is_file()
        source = args.images_from or (args.profile if mini_layout else "random")
    size = args.image_size or (64 if source == "random" else _world_image_size(source))
    return ldm, LareConfig(image_size=size, ensemble=args.ensemble), source


def _precision(ldm, config, dtype_name: str) -> dict | None:
    """bf16/fp16 map error against float32 on two random images (None for a float32 run)."""
    if dtype_name == "float32":
        return None
    from lare2lib.signals.lare import precision_error

    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, config.image_size, config.image_size, generator=generator) * 2 - 1
    return precision_error(ldm, pixels.to(ldm.device), ["p0", "p1"], ["a photo", "a photo"], config,
                           dtype=getattr(torch, dtype_name))


def _cast(ldm, dtype: torch.dtype):
    """The same components with VAE and UNet in ``dtype`` (prompts stay float32, as SD pipelines do)."""
    import dataclasses

    return dataclasses.replace(ldm, vae=ldm.vae.to(dtype), unet=ldm.unet.to(dtype))


def _world_image_size(profile_name: str) -> int:
    from lare2lib.core.profiles import get_profile

    return get_profile(profile_name).world.image_size


def format_table(results: dict) -> str:
    """One row per batch size: images/s of each variant and the three ratios."""
    title = (f"model {results['model']} · {results['images']} {results['image_source']} images "
             f"of {results['image_size']}² · K={results['ensemble']} · "
             f"{results['torch_threads']} threads · load {results['load_average']:.1f}")
    header = (f"{'batch':>5} {'LaRE':>8} {'DIRE':>8} {'driver':>8} {'bare':>8} {'loop':>8}"
              f" {'LaRE/DIRE':>9} {'batch/loop':>10} {'drv/bare':>8} {'peak MB':>8}   (images/s)")
    lines = [title, header]
    for batch_size, row in results["batch_sizes"].items():
        ips = {name: timing["images_per_second"] for name, timing in row["timings"].items()}
        lines.append(f"{batch_size:>5} {ips['lare']:>8.1f} {ips['dire']:>8.2f} "
                     f"{ips['driver']:>8.1f} {ips['bare']:>8.1f} {ips['per_image']:>8.1f} "
                     f"{row['lare_vs_dire_speedup']:>8.1f}× "
                     f"{row['batched_vs_per_image_speedup']:>9.1f}× "
                     f"{row['extraction_vs_bare_ratio']:>8.2f} {row['peak_memory_mb']:>8.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
