"""Cost of one EGRE training step against the backbone-only model, as a ratio in one run.

Each variant (``backbone``, ``esr``, ``ecr``, ``egre``; ``lare_cnn`` for scale) is built on the
same backbone and trained on the **same batch**: forward, cross-entropy, backward, grad-norm clip
5, Adam step, exactly what :func:`lare2lib.detectors.train.fit` does per step. Variants are timed
round-robin (one untimed warm-up step each, then ``--repeats`` rounds in which every variant takes
one step in turn), so a change of machine load hits them alike; reported: the fastest step of
each (``timeit``'s convention), its ratio to backbone-only, and the median over rounds of the
per-round ratio (steps seconds apart, so slow load drifts cancel). With both modes, the head's
overhead is also given as (frozen step of the variant − frozen step of backbone-only) / fine-tune
step of backbone-only: the heads timed alone, robust when the load swamps a 1 % difference.

Modes: ``finetune`` (the released recipe: the backbone trains too; the issue's target is
EGRE ≤ 1.15 × backbone-only here) and ``frozen`` (the mini notebook's: the backbone is fixed and
its outputs cached, so only the head trains; the ratio is then head against head and is large
by construction, its absolute cost tiny).

Usage::

    python bench/bench_egre.py                                   # mini: Lite0, 48 px crops, batch 48
    python bench/bench_egre.py --backbone resnet50_clip.openai --crop 224 --batch 8 --map-side 32
    python bench/bench_egre.py --modes finetune frozen --repeats 10 --out bench/results/egre_mini.json

Random backbone weights (``pretrained=False``): the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting threads

import torch  # noqa: E402

VARIANTS = ("backbone", "esr", "ecr", "egre", "lare_cnn")


def build(variant: str, args: argparse.Namespace, frozen: bool):
    from lare2lib.detectors.egre import EgreDetector

    torch.manual_seed(0)
    kwargs = {"img_size": args.crop} if args.backbone.startswith("resnet50_clip") else {}
    return EgreDetector(variant=variant, backbone=args.backbone, pretrained=False,
                        backbone_kwargs=kwargs, crop_size=args.crop, freeze_backbone=frozen).train()


def make_batch(model, args: argparse.Namespace, frozen: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    side = args.map_side * args.crop // args.lare_size
    batch = {"image": torch.randn(args.batch, 3, args.crop, args.crop, generator=generator),
             "lare": torch.rand(args.batch, 4, side, side, generator=generator),
             "label": torch.arange(args.batch) % 2}
    if frozen and model.backbone is not None:  # what the cached-feature datasets hand the model
        with torch.no_grad():
            batch["feature_map"], batch["global"] = model.backbone(batch["image"])
        del batch["image"]
    return batch


def step_fn(model, batch):
    from lare2lib.detectors.train import detector_loss

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> float:
        started = time.perf_counter()
        loss = detector_loss(model(batch), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return time.perf_counter() - started

    return step


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    frozen = mode == "frozen"
    steps = {}
    for variant in args.variants:
        model = build(variant, args, frozen)
        batch = make_batch(model, args, frozen)
        steps[variant] = step_fn(model, batch)
        steps[variant]()  # warm-up: first-call kernel selection and allocation
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.repeats):
        for variant in args.variants:
            times[variant].append(steps[variant]())
    best = {v: min(t) for v, t in times.items()}
    result = {"best_seconds": best, "median_seconds": {v: statistics.median(t) for v, t in times.items()}}
    if "backbone" in best:
        result["ratio_to_backbone"] = {v: best[v] / best["backbone"] for v in best}
        # the same round's steps ran seconds apart: their ratio cancels slow drifts of the load
        result["paired_median_ratio"] = {
            v: statistics.median(t / b for t, b in zip(times[v], times["backbone"])) for v in best}
    return result


def head_overhead(report: dict) -> dict[str, float]:
    """Extra cost of each head as a fraction of a fine-tuning step of the backbone-only model:
    (frozen-mode step of the variant − that of backbone-only) / fine-tune step of backbone-only.
    The frozen steps time the heads alone, so this stays readable when the load swamps the
    small difference between two whole fine-tuning steps."""
    frozen, finetune = report["modes"]["frozen"]["best_seconds"], report["modes"]["finetune"]["best_seconds"]
    return {v: (frozen[v] - frozen["backbone"]) / finetune["backbone"]
            for v in frozen if v != "lare_cnn"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--crop", type=int, default=48, help="image crop side (token grid = crop / 16)")
    parser.add_argument("--batch", type=int, default=48, help="training batch (released: 48)")
    parser.add_argument("--map-side", type=int, default=16, help="side of the whole LaRE map")
    parser.add_argument("--lare-size", type=int, default=64, help="side the image is squashed to for LaRE")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--modes", nargs="+", default=["finetune"], choices=("finetune", "frozen"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "load_average": os.getloadavg()},
              "args": vars(args), "modes": {}}
    for mode in args.modes:
        report["modes"][mode] = result = run_mode(mode, args)
        print(f"{mode}: {args.backbone}, crop {args.crop}, batch {args.batch}, load "
              f"{os.getloadavg()[0]:.1f}")
        for variant in args.variants:
            ratio = result.get("ratio_to_backbone", {}).get(variant, float("nan"))
            paired = result.get("paired_median_ratio", {}).get(variant, float("nan"))
            print(f"  {variant:<9} best {result['best_seconds'][variant] * 1e3:8.1f} ms  "
                  f"median {result['median_seconds'][variant] * 1e3:8.1f} ms  "
                  f"×backbone best {ratio:5.2f}, paired median {paired:5.2f}")
    if {"frozen", "finetune"} <= set(report["modes"]) and "backbone" in args.variants:
        report["head_overhead"] = overhead = head_overhead(report)
        print("head overhead on a fine-tuning step (frozen-mode difference / fine-tune step): "
              + ", ".join(f"{v} {100 * x:+.2f} %" for v, x in overhead.items()))
    report["load_average_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
