"""Build, save, verify and load the mini world (used by notebook 00 and every later notebook).

Layout
------
Committed (``lare2lib/weights/<recipe>/``, small, hash-checked)::

    manifest.json                 files → sha256, recipes, seed, steps, data hash, quality, logs
    kl_ae/  vq_ae/                diffusers ``save_pretrained`` folders (safetensors)
    kl_ldm/ vq_ldm/               ldm.json + unet/ + prompt_encoder/ + scheduler/

Derived (``<data_dir>/world/<key>/``, git-ignored, rebuilt from the above when missing)::

    real_{train,val,test}.safetensors          uint8 crops (see :mod:`lare2lib.data.imagesets`)
    recon_<ae>_{train,val,test}.safetensors    those crops through each autoencoder
    gen_<generator>.safetensors                DDIM samples of each generator

Training state (``<data_dir>/world_train/<recipe>/<model>/checkpoint.safetensors``) makes
``RETRAIN`` resumable after a kill.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, VQModel

from lare2lib.core import paths
from lare2lib.core.profiles import Profile, WorldConfig, get_profile
from lare2lib.data.imagesets import ImageSet
from lare2lib.models.conditioning import ClassPromptEncoder
from lare2lib.models.loaders import load_autoencoder as load_any_autoencoder
from lare2lib.world.photos import CLASS_NAMES, find_photos, make_crops
from lare2lib.models.loaders import sd_training_scheduler
from lare2lib.world.autoencoder_training import latent_scaling_factor, reconstruct, train_autoencoder
from lare2lib.world.recipes import RECIPES, GeneratorSpec, WorldRecipe, generator_specs
from lare2lib.world.sampling import sample_images
from lare2lib.world.unet_training import train_unet

__all__ = ["world_ldm", "crops_key", "real_sets", "weights_root", "train_stage", "export_weights", "verify_weights",
           "load_autoencoder", "load_ldm_parts", "sha256_file", "main"]

AE_NAMES = {"kl_ae": "kl_ae", "vq_ae": "vq_ae"}
LDM_AE = {"kl_ldm": "kl_ae", "vq_ldm": "vq_ae"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _crop_fields(world: WorldConfig) -> dict:
    keep = ("image_size", "photo_short_side", "crop_min", "crop_max", "crops_per_photo_train",
            "crops_per_photo_heldout", "max_photos")
    return {k: getattr(world, k) for k in keep}


def crops_key(profile: Profile, photo_ids: list[str]) -> str:
    """Hash of everything the real crops depend on: crop settings, seed and which photos exist."""
    payload = json.dumps({"crops": _crop_fields(profile.world), "seed": profile.seed, "photos": photo_ids},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def world_dir(profile: Profile, key: str) -> Path:
    return paths.data_dir() / "world" / f"{profile.world.recipe}-{key}"


def real_sets(profile: Profile, progress: bool = True) -> tuple[dict[str, ImageSet], dict]:
    """The real crops per split (cached), and a report of the photos behind them."""
    photos, report = find_photos(profile.world.max_photos)
    photo_ids = [p.spec.photo_id for p in photos]
    key = crops_key(profile, photo_ids)
    folder = world_dir(profile, key)
    files = {split: folder / f"real_{split}.safetensors" for split in ("train", "val", "test")}
    if all(f.is_file() for f in files.values()):
        sets = {split: ImageSet.load(f) for split, f in files.items()}
    else:
        w = profile.world
        sets = make_crops(photos, image_size=w.image_size, short_side=w.photo_short_side, crop_min=w.crop_min,
                          crop_max=w.crop_max, seed=profile.seed,
                          per_photo={"train": w.crops_per_photo_train, "val": w.crops_per_photo_heldout,
                                     "test": w.crops_per_photo_heldout})
        for split, image_set in sets.items():
            image_set.meta.update({"crops_key": key})
            image_set.save(files[split])
    info = {
        "crops_key": key,
        "folder": str(folder),
        "photos": [{"id": p.spec.photo_id, "category": p.spec.category, "split": p.spec.split,
                    "package": p.package, "licence": p.licence, "path": str(p.path),
                    "width": p.width, "height": p.height} for p in photos],
        "sources": report.found,
        "missing_sources": report.missing_sources,
        "missing_files": report.missing_files,
        "summary": report.summary(),
    }
    return sets, info


def weights_root(recipe: str) -> Path:
    """Committed weights for ``mini``; smoke-test weights live in the (git-ignored) data folder."""
    if recipe == "mini":
        return paths.weights_dir() / "mini"
    return paths.data_dir() / "weights" / recipe


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
    out.mkdir(parents=True, exist_ok=True)
    if stage in AE_NAMES:
        ae_recipe = recipe.kl_ae if stage == "kl_ae" else recipe.vq_ae
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


def export_weights(profile: Profile, quality: dict | None = None) -> Path:
    """Copy the trained models into the committed layout and write the hash manifest."""
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


def record_quality(recipe: str, quality: dict) -> None:
    """Store measured quality numbers in the manifest (not hashed: the weights do not change)."""
    path = weights_root(recipe) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["quality"] = quality
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class WeightsError(RuntimeError):
    """Committed mini weights missing or not matching their manifest."""


def verify_weights(recipe: str = "mini") -> dict:
    """Check every committed file against the manifest's sha256; return the manifest."""
    root = weights_root(recipe)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise WeightsError(f"no mini-world weights at {root}: run notebook 00 with RETRAIN=True "
                           f"(or `lare2 run 00 -p RETRAIN=True`) to train them")
    manifest = json.loads(manifest_path.read_text())
    bad = [rel for rel, digest in manifest["files"].items()
           if not (root / rel).is_file() or sha256_file(root / rel) != digest]
    if bad:
        raise WeightsError(f"mini-world weights at {root} do not match manifest.json: {bad}. "
                           f"Restore them with `git checkout -- {root}` or retrain (RETRAIN=True).")
    return manifest


def load_autoencoder(name: str, recipe: str = "mini") -> AutoencoderKL | VQModel:
    return load_any_autoencoder(str(weights_root(recipe) / name))


def load_ldm_parts(name: str, recipe: str = "mini") -> tuple:
    """(autoencoder, EMA UNet, prompt encoder, scaling factor) of a committed mini LDM."""
    folder = weights_root(recipe) / name
    spec = json.loads((folder / "ldm.json").read_text())
    ae = load_any_autoencoder(str((folder / spec["vae"]).resolve()))
    unet = UNet2DConditionModel.from_pretrained(str(folder / spec["unet"]), local_files_only=True)
    prompts = ClassPromptEncoder.from_pretrained(str(folder / spec["prompt_encoder"]), local_files_only=True)
    for module in (unet, prompts):
        module.eval().requires_grad_(False)
    return ae, unet, prompts, float(ae.config.scaling_factor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lare2lib.world.build",
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


# -- the world as later notebooks see it ------------------------------------------------------


@dataclass
class World:
    """The mini world: real crops, its autoencoders and LDMs, and derived image sets (cached).

    ``generated(name, split)`` and ``reconstructions(ae, split)`` build their set on first use
    and cache it under :attr:`folder`; the cache key includes the weights' hashes, the seed and
    the crop settings, so a retrain or a changed profile never reads a stale set.
    """

    profile: Profile
    folder: Path
    real: dict[str, ImageSet]
    photos: dict
    manifest: dict
    progress: bool = True
    _models: dict = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def generators(self) -> list[GeneratorSpec]:
        return generator_specs(self.profile.world.ddim_steps, self.profile.world.guidance_scale)

    def generator(self, name: str) -> GeneratorSpec:
        specs = {g.name: g for g in self.generators}
        if name not in specs:
            raise KeyError(f"unknown generator '{name}'; valid: {sorted(specs)}")
        return specs[name]

    def autoencoder(self, name: str):
        if name not in AE_NAMES:
            raise KeyError(f"unknown autoencoder '{name}'; valid: {sorted(AE_NAMES)}")
        if name not in self._models:
            self._models[name] = load_autoencoder(name, self.profile.world.recipe)
        return self._models[name]

    def ldm(self, name: str) -> tuple:
        """(autoencoder, UNet, prompt encoder, scaling factor) of ``kl_ldm`` or ``vq_ldm``."""
        if name not in LDM_AE:
            raise KeyError(f"unknown LDM '{name}'; valid: {sorted(LDM_AE)}")
        if name not in self._models:
            self._models[name] = load_ldm_parts(name, self.profile.world.recipe)
        return self._models[name]

    def _count(self, generator: str, split: str) -> int:
        w = self.profile.world
        if split == "test":
            return w.generated_per_generator
        if generator != w.train_generator:
            raise ValueError(f"only the training generator '{w.train_generator}' has '{split}' samples; "
                             f"'{generator}' has only 'test'")
        return {"train": w.generated_train, "val": w.generated_val}[split]

    def generated(self, name: str, split: str = "test") -> ImageSet:
        """Samples of a generator; classes cycle through the categories (balanced)."""
        path = self.folder / f"gen_{name}_{split}.safetensors"
        if path.is_file():
            return ImageSet.load(path)
        spec = self.generator(name)
        count = self._count(name, split)
        ae, unet, prompts, scale = self.ldm(spec.ldm)
        classes = torch.arange(count) % len(CLASS_NAMES)
        seed = self.profile.seed + {"train": 1000, "val": 2000, "test": 0}[split]
        pixels = sample_images(ae, unet, prompts, scale, classes, spec, seed, progress=self.progress)
        images = ImageSet(f"gen_{name}_{split}", pixels, classes, [f"{name}/{split}/{k:05d}" for k in range(count)],
                          {"generator": asdict(spec), "seed": seed})
        images.save(path)
        return images

    def reconstructions(self, ae_name: str, split: str = "test") -> ImageSet:
        """Real crops of a split passed through an autoencoder (posterior sample seeded per id)."""
        path = self.folder / f"recon_{ae_name}_{split}.safetensors"
        if path.is_file():
            return ImageSet.load(path)
        source = self.real[split]
        if ae_name == "taef2":
            pixels = taef2_reconstruct(source.pixels, self.progress)
        else:
            pixels = reconstruct(self.autoencoder(ae_name), source.pixels, self.profile.seed, source.ids,
                                 progress=self.progress)
        images = ImageSet(f"recon_{ae_name}_{split}", pixels, source.class_index.clone(),
                          [f"{i}@{ae_name}" for i in source.ids], {"autoencoder": ae_name})
        images.save(path)
        return images


def taef2_reconstruct(pixels: torch.Tensor, progress: bool) -> torch.Tensor:
    """TAEF2 (the real FLUX.2 tiny autoencoder) reconstructions; needs ``paths.taef2_dir()``."""
    folder = paths.taef2_dir()
    if folder is None:
        raise FileNotFoundError("TAEF2 weights not found: set LARE2_TAEF2_DIR to a folder with "
                                "taef2_encoder.pth and taef2_decoder.pth")
    taef2 = load_any_autoencoder(str(folder), kind="taef2")
    out = []
    with torch.no_grad():
        for start in range(0, len(pixels), 64):
            x = pixels[start:start + 64].float() / 255.0
            out.append((taef2.decode(taef2.encode(x)).clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def _weights_key(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:8]


def load_world(profile: Profile, retrain: bool = False, progress: bool = True) -> World:
    """The world for a profile: verified weights (trained first when ``retrain``) + real crops.

    ``smoke`` always retrains its tiny models (seconds); ``mini`` loads the committed weights
    and checks their hashes unless ``retrain`` is set.
    """
    if retrain or profile.world.recipe == "smoke":
        retrain_world(profile, progress=progress)
    manifest = verify_weights(profile.world.recipe)
    real, photos = real_sets(profile, progress)
    world_key = hashlib.sha256(json.dumps(
        {"crops": photos["crops_key"], "weights": _weights_key(manifest), "seed": profile.seed,
         "world": asdict(profile.world)}, sort_keys=True).encode()).hexdigest()[:12]
    folder = paths.data_dir() / "world" / f"{profile.world.recipe}-{world_key}"
    folder.mkdir(parents=True, exist_ok=True)
    return World(profile, folder, real, photos, manifest, progress)


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
        cmd = [sys.executable, "-m", "lare2lib.world.build", stage, "--profile", profile.world.recipe,
               "--seed", str(profile.seed), "--threads", "1"]
        procs.append((stage, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for stage, proc, log in procs:
        code = proc.wait()
        log.close()
        if code:
            raise RuntimeError(f"training stage '{stage}' failed (exit {code}); see {log.name}")


def world_ldm(world, name: str):
    """:class:`lare2lib.models.loaders.LDMComponents` of one of the world's LDMs, loaded from its
    folder (``mini``: the committed, hash-checked weights; ``smoke``: the tiny retrained ones)."""
    from lare2lib.models.loaders import load_ldm

    return load_ldm(str(weights_root(world.profile.world.recipe) / name))
