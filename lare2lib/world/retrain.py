"""Train the mini world's models (resumable, one stage per process) and export them as committed weights.

Training state (``<data_dir>/world_train/<recipe>/<model>/checkpoint.safetensors``) makes
``RETRAIN`` resumable after a kill. ``python -m lare2lib.world.retrain STAGE`` trains one stage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lare2lib.core import paths
from lare2lib.core.profiles import Profile, get_profile
from lare2lib.data.imagesets import ImageSet
from lare2lib.models.autoencoders import load_autoencoder as load_any_autoencoder
from lare2lib.models.schedulers import sd_training_scheduler
from lare2lib.world.autoencoder_training import latent_scaling_factor, train_autoencoder
from lare2lib.world.photos import CLASS_NAMES
from lare2lib.world.real_crops import real_sets
from lare2lib.world.recipes import RECIPES, WorldRecipe
from lare2lib.world.unet_training import train_unet
from lare2lib.world.weights import AE_NAMES, LDM_AE, sha256_file, weights_root

__all__ = ["train_dir", "train_stage", "export_weights", "retrain_world", "main"]


def train_dir(recipe: str, model: str) -> Path:
    return paths.data_dir() / "world_train" / recipe / model


# -- training stages ------------------------------------------------------------------------


def train_stage(stage: str, profile: Profile, threads: int | None = None, progress: bool = True) -> dict:
    """Train one model of the world and save its raw result into its training folder.

    Stages: ``kl_ae``, ``vq_ae`` (need only the crops), ``kl_ldm``, ``vq_ldm`` (need their
    autoencoder's stage done). Resumable: rerunning continues from the last checkpoint.
    """
    if threads:
        torch.set_num_threads(threads)
    recipe: WorldRecipe = RECIPES[profile.world.recipe]
    sets, info = real_sets(profile, progress)
    started = time.time()
    out = train_dir(profile.world.recipe, stage)
    _claim_workdir(out, stage, recipe, info["crops_key"], profile.seed)
    if stage in AE_NAMES:
        ae_recipe = _autoencoder_recipes(recipe)[stage]
        ae, log = train_autoencoder(ae_recipe, sets["train"], sets["val"], out, profile.seed, progress)
        ae.register_to_config(scaling_factor=latent_scaling_factor(ae, sets["train"].pixels))
        ae.save_pretrained(out / "final")
        result = {"log": log, "recipe": asdict(ae_recipe)}
    elif stage in LDM_AE:
        ae = load_any_autoencoder(str(train_dir(profile.world.recipe, LDM_AE[stage]) / "final"))
        unet, prompts, log = train_unet(recipe.unet, ae, ae.config.scaling_factor, sets["train"], sets["val"],
                                        CLASS_NAMES, out, profile.seed, stage, progress)
        unet.save_pretrained(out / "final" / "unet")
        prompts.save_pretrained(out / "final" / "prompt_encoder")
        sd_training_scheduler().save_pretrained(out / "final" / "scheduler")
        result = {"log": log, "recipe": asdict(recipe.unet)}
    else:
        raise ValueError(f"unknown stage '{stage}'; valid: {sorted(AE_NAMES) + sorted(LDM_AE)}")
    result.update({"seconds": time.time() - started, "threads": torch.get_num_threads(),
                   "crops_key": info["crops_key"], "seed": profile.seed})
    (out / "final" / "train_result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def _autoencoder_recipes(recipe: WorldRecipe) -> dict:
    return {"kl_ae": recipe.kl_ae, "vq_ae": recipe.vq_ae}


def _stage_recipe(stage: str, recipe: WorldRecipe) -> dict:
    """The part of the world's recipe a stage trains with (an LDM also depends on its autoencoder's)."""
    own = _autoencoder_recipes(recipe)
    if stage in own:
        return {stage: asdict(own[stage])}
    return {stage: asdict(recipe.unet), LDM_AE[stage]: asdict(own[LDM_AE[stage]])}


def _claim_workdir(out: Path, stage: str, recipe: WorldRecipe, crops_key: str, seed: int) -> None:
    """Record what a training folder trains on; refuse to resume a checkpoint of other inputs.

    Resuming is exact only for the same recipe, crops and seed: a checkpoint from before the
    corpus or the recipe changed would silently continue a different training.
    """
    inputs = {"stage": stage, "recipe": _stage_recipe(stage, recipe), "crops_key": crops_key, "seed": seed}
    inputs = json.loads(json.dumps(inputs))  # as it reads back from disk (tuples become lists)
    record = out / "inputs.json"
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous != inputs:
            changed = sorted(k for k in inputs if previous.get(k) != inputs[k])
            raise RuntimeError(f"{out} holds a training of other inputs (changed: {', '.join(changed)}); "
                               f"delete that folder to train '{stage}' from scratch")
    elif (out / "checkpoint.safetensors").is_file():
        raise RuntimeError(f"{out} holds a checkpoint without inputs.json (an older layout); "
                           f"delete that folder to train '{stage}' from scratch")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(inputs, indent=1, sort_keys=True))


UNET_STORAGE_DTYPE = torch.float16
"""The committed UNets are stored in float16 (half the repository size: the v2 UNet is 44 MB in
float32); diffusers loads them back as float32, so only the weights' last bits are rounded
(relative 2^-11). The autoencoders and prompt encoders stay float32: they are small."""


def _store_unet_in_half(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: v.to(UNET_STORAGE_DTYPE) if v.is_floating_point() else v for k, v in tensors.items()},
              str(path), metadata={"format": "pt"})


def export_weights(profile: Profile, quality: dict | None = None) -> Path:
    """Copy the trained models into the committed layout (UNets in :data:`UNET_STORAGE_DTYPE`)
    and write the hash manifest."""
    recipe = profile.world.recipe
    root = weights_root(recipe)
    staging = root.with_name(root.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    results = {}
    for name in ("kl_ae", "vq_ae", "kl_ldm", "vq_ldm"):
        source = train_dir(recipe, name) / "final"
        target = staging / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("train_result.json"))
        results[name] = json.loads((source / "train_result.json").read_text())
        if name in LDM_AE:
            _store_unet_in_half(target / "unet")
            (target / "ldm.json").write_text(json.dumps(
                {"vae": f"../{LDM_AE[name]}", "unet": "unet", "prompt_encoder": "prompt_encoder",
                 "scheduler": "scheduler"}, indent=1, sort_keys=True) + "\n")
    files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    real, info = real_sets(profile, progress=False)
    data = {"crops_key": info["crops_key"], "photos": [p["id"] for p in info["photos"]],
            "train_crops_sha256": _imageset_digest(real["train"])}
    manifest = {"recipe": recipe, "seed": profile.seed, "world": asdict(profile.world), "files": files,
                "training": results, "quality": quality or {}, "class_names": list(CLASS_NAMES), "data": data}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    return root


def _imageset_digest(images: ImageSet) -> str:
    """sha256 of the pixels and ids the models were trained on (the data manifest hash)."""
    digest = hashlib.sha256(images.pixels.numpy().tobytes())
    digest.update("\n".join(images.ids).encode())
    return digest.hexdigest()


def retrain_world(profile: Profile, progress: bool = True, parallel: bool | None = None) -> Path:
    """Train every model of the world (resuming where a previous run stopped), then export.

    ``mini`` runs the two autoencoders, then the two UNets, as parallel subprocesses with one
    thread each (two cores used fully, and a kill loses at most one checkpoint interval);
    ``smoke`` trains in-process.
    """
    parallel = profile.world.recipe != "smoke" if parallel is None else parallel
    for stages in (("kl_ae", "vq_ae"), ("kl_ldm", "vq_ldm")):
        if parallel:
            _run_parallel(stages, profile)
        else:
            for stage in stages:
                train_stage(stage, profile, progress=progress)
    return export_weights(profile)


def _run_parallel(stages: tuple[str, ...], profile: Profile) -> None:
    import subprocess
    import sys

    log_dir = paths.data_dir() / "world_train" / profile.world.recipe
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for stage in stages:
        log = open(log_dir / f"{stage}.log", "a")
        cmd = [sys.executable, "-m", "lare2lib.world.retrain", stage, "--profile", profile.world.recipe,
               "--seed", str(profile.seed), "--threads", "1"]
        procs.append((stage, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for stage, proc, log in procs:
        code = proc.wait()
        log.close()
        if code:
            raise RuntimeError(f"training stage '{stage}' failed (exit {code}); see {log.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lare2lib.world.retrain",
                                     description="Train one model of the mini world (resumable).")
    parser.add_argument("stage", choices=sorted(AE_NAMES) + sorted(LDM_AE) + ["export"])
    parser.add_argument("--profile", default="mini", choices=["mini", "smoke"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile, seed=args.seed)
    if args.stage == "export":
        print(export_weights(profile))
    else:
        result = train_stage(args.stage, profile, args.threads)
        print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


