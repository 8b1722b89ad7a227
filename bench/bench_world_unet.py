"""Cost of one training step of the mini world's latent UNet, for candidate recipes, as ratios in one run.

Issue 14 asks for better-fit reference models within about 12 CPU-hours of training per model.
This prices candidate UNets against the committed ``mini`` recipe before a long training starts:
each variant takes exactly the step :func:`lare2lib.world.unet_training.train_unet` takes
(noised latents, class prompts, forward, MSE, backward, grad clip 1, AdamW) on the same random
batch of 4×16×16 latents (the KL autoencoder's latents of 64 px crops). Variants are timed
round-robin after one untimed warm-up step each, so a change of machine load hits them alike.
Reported per variant: parameters, the fastest step (``timeit``'s convention), its ratio to
``mini``, the hours that ``--steps`` steps would take at that speed on the threads used, and
what sampling costs with it: the fastest no-grad forward per image and the minutes notebook 00
spends on the UNet when it samples the default world (every generator's images × DDIM steps,
doubled under guidance).

Usage::

    python bench/bench_world_unet.py                          # 1 thread, as the world trains
    python bench/bench_world_unet.py --repeats 10 --steps 20000 --out bench/results/world_unet.json

Random weights: the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting threads

import torch  # noqa: E402

CANDIDATES = {
    "mini": {},
    "deep": {"layers_per_block": 2},
    "wide": {"block_out_channels": (64, 128, 192), "cross_attention_dim": 128},
    "wide_deep": {"block_out_channels": (64, 128, 192), "layers_per_block": 2, "cross_attention_dim": 128},
}
"""Recipe overrides of the committed ``mini`` UNet; ``mini`` itself is the reference. Widths stay
multiples of 32: the UNet's GroupNorm uses min(32, first width) groups."""


def build(overrides: dict, batch_size: int):
    from lare2lib.models.conditioning import ClassPromptEncoder
    from lare2lib.world.photos import CLASS_NAMES
    from lare2lib.world.recipes import RECIPES
    from lare2lib.world.unet_training import build_unet

    recipe = dataclasses.replace(RECIPES["mini"].unet, batch_size=batch_size, **overrides)
    torch.manual_seed(0)
    unet = build_unet(recipe, latent_size=16, latent_channels=4).train()
    prompts = ClassPromptEncoder(class_names=CLASS_NAMES, dim=recipe.cross_attention_dim,
                                 seq_len=recipe.prompt_tokens)
    params = [p for m in (unet, prompts) for p in m.parameters()]
    return unet, prompts, params, torch.optim.AdamW(params, lr=recipe.lr)


def step(unet, prompts, params, optimizer, batch: dict) -> None:
    from lare2lib.world.unet_training import apply_gradients

    prediction = unet(batch["noisy"], batch["t"], prompts(batch["classes"])).sample
    apply_gradients(torch.nn.functional.mse_loss(prediction, batch["noise"]), optimizer, params)


def make_batch(batch_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"noisy": torch.randn(batch_size, 4, 16, 16, generator=generator),
            "noise": torch.randn(batch_size, 4, 16, 16, generator=generator),
            "t": torch.randint(0, 1000, (batch_size,), generator=generator),
            "classes": torch.arange(batch_size) % 6}  # 0 = the null prompt, 1..5 the classes


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    batch = make_batch(args.batch)
    models = {name: build(CANDIDATES[name], args.batch) for name in args.variants}
    for model in models.values():
        step(*model, batch)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            step(*model, batch)
            times[name].append(time.perf_counter() - started)
    reference = min(times[args.variants[0]])
    forward = _forward_seconds(models, batch, args.repeats)
    bill = _world_sampling_forwards()
    rows = {}
    for name, model in models.items():
        best = min(times[name])
        rows[name] = {"overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in CANDIDATES[name].items()},
                      "params_m": sum(p.numel() for p in model[2]) / 1e6, "step_s": best,
                      "ratio": best / reference, "hours_for_steps": best * args.steps / 3600,
                      "forward_ms_per_image": 1e3 * forward[name] / args.batch,
                      "world_sampling_min": forward[name] / args.batch * bill / 60}
    return {"world_sampling_image_forwards": bill, "threads": args.threads, "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "variants": rows}


@torch.no_grad()
def _forward_seconds(models: dict, batch: dict, repeats: int) -> dict[str, float]:
    """Fastest no-grad forward of one batch per variant (a sampling step without guidance)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (unet, prompts, _, _) in models.items():
            unet.eval()
            started = time.perf_counter()
            unet(batch["noisy"], batch["t"], prompts(batch["classes"]))
            times[name].append(time.perf_counter() - started)
    return {name: min(t[1:]) for name, t in times.items()}


def _world_sampling_forwards() -> int:
    """Image-forwards notebook 00 spends sampling the default mini world."""
    from lare2lib.core.profiles import get_profile
    from lare2lib.world.build import sampling_image_forwards

    return sampling_image_forwards(get_profile("mini").world)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES),
                        help="the first is the reference of the ratios")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20000, help="training steps to price")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    print(f"{'variant':<10} {'params M':>9} {'s/step':>8} {'ratio':>6} {'h/' + str(args.steps):>9} "
          f"{'fwd ms/img':>10} {'sampling min':>12}")
    for name, row in result["variants"].items():
        print(f"{name:<10} {row['params_m']:>9.2f} {row['step_s']:>8.3f} {row['ratio']:>6.2f} "
              f"{row['hours_for_steps']:>9.1f} {row['forward_ms_per_image']:>10.2f} {row['world_sampling_min']:>12.1f}")
    print(f"(sampling min: notebook 00's {result['world_sampling_image_forwards']:,} image-forwards "
          f"on {args.threads} thread(s), decoding excluded)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
