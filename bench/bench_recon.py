"""Reconstruction throughput: images/s of 256² crops through an autoencoder (issue 5 target).

Times :func:`lare2lib.detectors.recon_classifier.reconstruct_images` (cut to the multiple, encode with a seeded
posterior sample, decode, round to 8 bits), the work of making one training pair, on random
pixels (the cost does not depend on content). One untimed warm-up batch, then ``--repeats``
timed runs over ``--images`` images; the fastest is kept and the median reported beside it.

    python bench/bench_recon.py                                  # mini:kl_ae, 256², batch 1/4/8
    python bench/bench_recon.py --autoencoder mini:vq_ae --size 512 --batch-sizes 2
    python bench/bench_recon.py --autoencoder /path/to/sd21/vae --out bench/results/recon.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lare2lib.detectors.recon_classifier import reconstruction_speed  # noqa: E402
from lare2lib.models.autoencoders import load_autoencoder  # noqa: E402
from lare2lib.models.devices import resolve_device  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoencoder", default="mini:kl_ae", help="autoencoder reference (mini:kl_ae)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (256)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8], help="batch sizes to time")
    parser.add_argument("--images", type=int, default=16, help="images per timed run (16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--out", help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ae = load_autoencoder(args.autoencoder, device=resolve_device(args.device))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for batch_size in args.batch_sizes:
        row = reconstruction_speed(ae, size=args.size, batch_size=batch_size, images=args.images,
                                   repeats=args.repeats)
        rows.append(row)
        print(f"{args.autoencoder} {args.size}² batch {batch_size:>2}: {row['images_per_second']:7.2f} img/s "
              f"(best of {args.repeats}; median {args.images / row['seconds_median']:.2f})", flush=True)
    result = {"autoencoder": args.autoencoder, "device": str(next(ae.parameters()).device),
              "torch": torch.__version__, "machine": platform.machine(), "cores": os.cpu_count(),
              "load_average_start": load, "results": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"load_average_start": load, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
