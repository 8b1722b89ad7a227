"""Extraction into the feature store at scale, and the store's own costs, in one run.

Three parts (each can be skipped):

* ``scale``: ``--images`` small random PNGs (24–48 px, mixed sizes) through the whole
  :func:`lare2lib.signals.extract.extract_to_store` path (decoding in a DataLoader worker, squash,
  LaRE on the tiny random SD-shaped LDM of :mod:`lare2lib.models.tiny`, store writes in shards
  of 4096), resident memory (this process + workers) sampled every 0.5 s. Constant
  throughput and flat memory mean the pipeline holds at any number of images; the figure
  shows both curves.
* ``variants``: LaRE-sized maps (4×32×32): float16 against float32 storage (bytes, write and
  read speed, rounding error), per-id random reads with the open-shard cache against reopening
  the shard each time, batch against per-id reads: ratios measured in one run.
* ``index``: what the index costs per shard written, one part per shard (this format) against
  rewriting one index of every id (format 1) at GenImage's 2.68 M ids, and the in-memory
  index's bytes per id (measured by opening a store of ``--index-ids`` ids).

Usage::

    python bench/bench_store.py --images 20000 --out bench/results/store_scale.json \\
        --figure bench/results/store_scale.png
    python bench/bench_store.py --skip scale          # the quick parts only (~1 min)

Numbers depend on the machine and its load (printed with the results); compare the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from memory import MemorySampler, rss_mb  # noqa: E402  (a sibling script module)

LARE_SHAPE = (4, 32, 32)
"""A LaRE map of SD v1.5 at 256 px (16 KB as float32)."""
GENIMAGE_IDS = 2_680_000


def genimage_like_ids(count: int, start: int = 0) -> list[str]:
    """Ids shaped like GenImage's (subset/split/class folder/file), ~80 characters."""
    return [f"stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/{'ai' if i % 2 else 'nature'}"
            f"/{i:07d}_sdv4_{i % 1000:05d}.png" for i in range(start, start + count)]


def best_of(function, repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` runs (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


# -- scale ----------------------------------------------------------------------------------
def write_small_pngs(folder: Path, count: int, class_names, seed: int = 0) -> list[tuple]:
    """``count`` random PNGs of 24–48 px sides as extraction records ``(id, path, class)``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        height, width = rng.integers(24, 49, size=2)
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append((path.relative_to(folder).as_posix(), str(path),
                        class_names[i % len(class_names)]))
    return records


def bench_scale(count: int, batch_size: int = 64, ensemble: int = 4, workers: int = 1,
                shard_size: int = 4096) -> dict:
    """Extract ``count`` images into a store, sampling time, maps stored and RSS."""
    from lare2lib.core.profiles import LareConfig
    from lare2lib.data.store import FeatureStore
    from lare2lib.models.tiny import tiny_ldm_components
    from lare2lib.signals.extract import extract_to_store
    from lare2lib.signals.lare import LareExtractor

    ldm = tiny_ldm_components("kl")
    config = LareConfig(image_size=32, ensemble=ensemble, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        records = write_small_pngs(Path(folder) / "images", count, ldm.class_names)
        png_seconds = time.perf_counter() - started
        store = FeatureStore(Path(folder) / "store", {"bench": "scale"}, shard_size=shard_size)
        extractor = LareExtractor(ldm, config, seed=0)
        with MemorySampler(lambda: len(store), interval=0.5) as memory:
            summary = extract_to_store(extractor, ldm, records, store, config,
                                       batch_size=batch_size, num_workers=workers,
                                       progress=False)
        store.close()
        reader = FeatureStore.open_read_only(Path(folder) / "store")
        picks = np.random.default_rng(1).choice(count, size=min(count, 2048), replace=False)
        sample = reader.get([records[i][0] for i in picks])
        disk = sum(path.stat().st_size for path in (Path(folder) / "store").rglob("*")
                   if path.is_file())
        result = {"images": count, "stored": len(reader), "bad": len(summary.bad),
                  "feature_shape": list(reader.feature_shape), "shards": len(reader.shard_files()),
                  "store_bytes": disk, "png_seconds": png_seconds,
                  "extract_seconds": summary.seconds,
                  "images_per_second": summary.images_per_second,
                  "read_back_finite": bool(torch.isfinite(sample).all()),
                  "batch_size": batch_size, "ensemble": ensemble, "workers": workers,
                  "shard_size": shard_size, "peak_rss_mb": memory.peak_mb,
                  "curve": memory.samples}
    result.update(_scale_summary(result["curve"], count))
    return result


def _scale_summary(curve: list[dict], count: int) -> dict:
    """Linearity of time and flatness of memory, from the sampled curve."""
    done = np.array([s["progress"] for s in curve])
    seconds = np.array([s["seconds"] for s in curve])
    rss = np.array([s["rss_mb"] for s in curve])

    def at(fraction: float) -> int:  # first sample with at least this fraction stored
        return int(np.argmax(done >= fraction * count))

    first, half, last = at(0.1), at(0.5), len(curve) - 1
    rate_first = (done[half] - done[first]) / max(seconds[half] - seconds[first], 1e-9)
    rate_second = (done[last] - done[half]) / max(seconds[last] - seconds[half], 1e-9)
    steady = done >= 0.1 * count  # after warm-up: least-squares slope of memory on maps stored
    slope = np.polyfit(done[steady], rss[steady], 1)[0] if np.ptp(done[steady]) > 0 else 0.0
    growth = slope * 10_000
    return {"throughput_second_half_vs_first": rate_second / rate_first,
            "rss_mb_at_10pct": float(rss[first]), "rss_mb_at_end": float(rss[last]),
            "rss_growth_mb_per_10k_images": float(growth)}


def plot_scale(result: dict, path: Path, load: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a script, not a notebook: no display
    import matplotlib.pyplot as plt

    curve = result["curve"]
    done = np.array([s["progress"] for s in curve])
    seconds = np.array([s["seconds"] for s in curve])
    rss = np.array([s["rss_mb"] for s in curve])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.3))
    left.plot(seconds, done, lw=1.5)
    left.set(xlabel="seconds", ylabel="maps stored",
             title=f"{result['images_per_second']:.0f} images/s; 2nd half / 1st half "
                   f"= {result['throughput_second_half_vs_first']:.2f}")
    right.plot(done, rss, lw=1.5)
    right.set(xlabel="maps stored", ylabel="memory incl. workers, PSS (MB)", ylim=(0, rss.max() * 1.15),
              title=f"peak {result['peak_rss_mb']:.0f} MB; "
                    f"{result['rss_growth_mb_per_10k_images']:+.1f} MB per 10k images")
    for axis in (left, right):
        axis.title.set_fontsize(9)
    fig.suptitle(f"{result['images']} images of 24–48 px → LaRE {tuple(result['feature_shape'])} "
                 f"maps (K = {result['ensemble']}) in {result['shards']} shards of ≤ "
                 f"{result['shard_size']} rows, flushed at least every 60 s ({load})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# -- storage variants -----------------------------------------------------------------------
def bench_variants(count: int = 8192, repeats: int = 3) -> dict:
    """float16 vs float32; cached vs reopened per-id reads; batch vs per-id reads."""
    from lare2lib.data.store import FeatureStore

    generator = torch.Generator().manual_seed(0)
    maps = torch.rand((count, *LARE_SHAPE), generator=generator).pow(3) * 0.1  # LaRE-like range
    ids = genimage_like_ids(count)
    picks = torch.randperm(count, generator=generator)[:2048].tolist()
    wanted = [ids[i] for i in picks]
    singles = wanted[:256]
    out: dict = {"maps": count, "shape": list(LARE_SHAPE)}
    with tempfile.TemporaryDirectory() as root:
        for dtype in ("float32", "float16"):
            folder = Path(root) / dtype

            def write() -> None:
                shutil.rmtree(folder, ignore_errors=True)
                with FeatureStore(folder, {"bench": dtype}, dtype=dtype) as store:
                    for first in range(0, count, 256):
                        store.append(ids[first:first + 256], maps[first:first + 256])

            write_seconds = best_of(write, repeats)
            reader = FeatureStore.open_read_only(folder)
            batch_seconds = best_of(lambda: reader.get(wanted), repeats)
            cached = best_of(lambda: [reader.get([i]) for i in singles], repeats)

            def reopened() -> None:
                for image_id in singles:
                    reader._handles.clear()  # what a reader without the open-shard cache pays
                    reader.get([image_id])

            reopen = best_of(reopened, repeats)
            error = (reader.get(ids) - maps).abs()
            out[dtype] = {
                "bytes": sum(p.stat().st_size for p in folder.glob("shard-*.safetensors")),
                "write_maps_per_second": count / write_seconds,
                "batch_read_maps_per_second": len(wanted) / batch_seconds,
                "single_read_maps_per_second": len(singles) / cached,
                "single_read_reopen_maps_per_second": len(singles) / reopen,
                "max_abs_error": float(error.max()),
                "reported_error": reader.report.get("storage_error"),
            }
    fp16, fp32 = out["float16"], out["float32"]
    out["ratios"] = {
        "fp16_vs_fp32_bytes": fp16["bytes"] / fp32["bytes"],
        "fp16_vs_fp32_write": fp16["write_maps_per_second"] / fp32["write_maps_per_second"],
        "fp16_vs_fp32_batch_read": fp16["batch_read_maps_per_second"]
        / fp32["batch_read_maps_per_second"],
        "cached_vs_reopen_single_read": fp32["single_read_maps_per_second"]
        / fp32["single_read_reopen_maps_per_second"],
        "batch_vs_single_read": fp32["batch_read_maps_per_second"]
        / fp32["single_read_maps_per_second"],
    }
    return out


# -- index -----------------------------------------------------------------------------------
def bench_index(index_ids: int, shard_size: int = 4096, repeats: int = 3) -> dict:
    """Per-shard index cost (part vs whole-index rewrite) and in-memory bytes per id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write_index(count: int, path: Path) -> float:
        table = pa.table({"image_id": pa.array(genimage_like_ids(count)),
                          "shard": np.arange(count, dtype=np.int32) // shard_size,
                          "row": np.arange(count, dtype=np.int32) % shard_size})
        return best_of(lambda: pq.write_table(table, path), repeats)

    out: dict = {"shard_size": shard_size}
    with tempfile.TemporaryDirectory() as root:
        part = write_index(shard_size, Path(root) / "part.parquet")
        whole = write_index(GENIMAGE_IDS, Path(root) / "whole.parquet")
        shards = GENIMAGE_IDS / shard_size
        out["per_shard_seconds"] = {"part (format 2)": part, "whole index of 2.68 M ids (format 1)": whole}
        # format 1 rewrote an index of every id so far after each shard: on average half of it
        out["genimage_run_index_seconds"] = {"format 2": shards * part,
                                             "format 1 (≈)": shards * whole / 2}
        out["bytes_per_id_in_memory"] = _index_memory(Path(root) / "store", index_ids, shard_size)
        out["index_ids"] = index_ids
    return out


def _index_memory(folder: Path, count: int, shard_size: int) -> float:
    """RSS growth per id when a reader opens a store of ``count`` ids (index parts only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lare2lib.data.store import config_hash

    (folder / "index").mkdir(parents=True)
    config = {"bench": "index"}
    (folder / "store.json").write_text(json.dumps({
        "format_version": 2, "config": config, "config_hash": config_hash(config),
        "storage_dtype": "float32", "shard_size": shard_size, "library_version": "bench",
        "feature_shape": list(LARE_SHAPE)}))
    for number, first in enumerate(range(0, count, shard_size)):
        ids = genimage_like_ids(min(shard_size, count - first), first)
        name = f"shard-{number:05d}"
        pq.write_table(pa.table({"image_id": ids, "shard": [name] * len(ids),
                                 "row": np.arange(len(ids), dtype=np.int32)}),
                       folder / "index" / f"{name}.parquet")
    from lare2lib.data.store import FeatureStore

    gc.collect()
    before = rss_mb(children=False)
    reader = FeatureStore.open_read_only(folder)
    gc.collect()
    grown = rss_mb(children=False) - before
    assert len(reader) == count
    return grown * 2**20 / count


# -- main ------------------------------------------------------------------------------------
def machine() -> dict:
    return {"machine": platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_start": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "torch": torch.__version__}


def _load_text(machine_info: dict) -> str:
    return (f"load {machine_info['load_average_start']:.1f}→{machine_info['load_average_end']:.1f}"
            f" on {machine_info['cpu_count']} cores")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images of the scale run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader decoding processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--variant-maps", type=int, default=8192)
    parser.add_argument("--index-ids", type=int, default=1_000_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=("scale", "variants", "index"))
    parser.add_argument("--out", type=Path, help="results as JSON")
    parser.add_argument("--figure", type=Path, help="scale curves as PNG")
    parser.add_argument("--plot-from", type=Path, metavar="JSON",
                        help="only redraw --figure from the results of an earlier run")
    args = parser.parse_args(argv)
    if args.plot_from:
        results = json.loads(args.plot_from.read_text())
        plot_scale(results["scale"], args.figure, _load_text(results["machine"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {"machine": machine()}
    if "variants" not in args.skip:
        results["variants"] = bench_variants(args.variant_maps)
        print(json.dumps(results["variants"]["ratios"], indent=1))
    if "index" not in args.skip:
        results["index"] = bench_index(args.index_ids)
        print(json.dumps({k: v for k, v in results["index"].items()}, indent=1))
    if "scale" not in args.skip:
        results["scale"] = bench_scale(args.images, args.batch_size, args.ensemble, args.workers)
        scale = results["scale"]
        print(f"scale: {scale['stored']} maps in {scale['extract_seconds']:.0f} s "
              f"({scale['images_per_second']:.1f} images/s), 2nd/1st half throughput "
              f"{scale['throughput_second_half_vs_first']:.2f}, RSS {scale['rss_mb_at_10pct']:.0f}"
              f" → {scale['rss_mb_at_end']:.0f} MB (peak {scale['peak_rss_mb']:.0f})")
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    if args.figure and "scale" in results:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        plot_scale(results["scale"], args.figure, _load_text(results["machine"]))
    if args.out:
        if "scale" in results:  # keep the file small: at most ~300 points of the curve
            curve = results["scale"]["curve"]
            results["scale"]["curve"] = curve[:: max(1, len(curve) // 300)] + curve[-1:]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
