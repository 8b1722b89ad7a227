"""The mini world as every notebook sees it: verified weights, real crops and derived image sets.

Derived (``<data_dir>/world/<key>/``, git-ignored, rebuilt from the committed weights when missing)::

    recon_<ae>_{train,val,test}.safetensors    the real crops through each autoencoder
    gen_<generator>_<split>.safetensors        DDIM samples of each generator

The pieces live beside it: :mod:`lare2lib.world.real_crops` (the crops),
:mod:`lare2lib.world.weights` (committed weights), :mod:`lare2lib.world.retrain` (training them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lare2lib.core import paths
from lare2lib.core.profiles import Profile, WorldConfig
from lare2lib.data.imagesets import ImageSet
from lare2lib.models.autoencoders import load_autoencoder as load_any_autoencoder
from lare2lib.world.autoencoder_training import reconstruct
from lare2lib.world.photos import CLASS_NAMES
from lare2lib.world.real_crops import real_sets
from lare2lib.world.recipes import GeneratorSpec, generator_specs
from lare2lib.world.retrain import retrain_world
from lare2lib.world.sampling import sample_images
from lare2lib.world.weights import (AE_NAMES, LDM_AE, cross_family_autoencoder, load_autoencoder, load_ldm_parts,
                                    verify_weights)

__all__ = ["World", "load_world", "sample_count", "sampling_image_forwards", "taef2_reconstruct"]

SPLITS = ("train", "val", "test")


def sample_count(world: WorldConfig, generator: str, split: str) -> int:
    """How many images ``generator`` samples for ``split``: every generator has test images;
    only the training generator (detectors train on its samples) has train and val ones."""
    if split == "test":
        return world.generated_per_generator
    if generator != world.train_generator:
        raise ValueError(f"only the training generator '{world.train_generator}' has '{split}' samples; "
                         f"'{generator}' has only 'test'")
    return {"train": world.generated_train, "val": world.generated_val}[split]


def sampling_image_forwards(world: WorldConfig) -> int:
    """UNet image-forwards it takes to sample every set of the world (guidance doubles a step)."""
    total = 0
    for spec in generator_specs(world.ddim_steps, world.guidance_scale):
        splits = SPLITS if spec.name == world.train_generator else ("test",)
        images = sum(sample_count(world, spec.name, split) for split in splits)
        total += images * spec.steps * (2 if spec.guidance != 1.0 else 1)
    return total


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

    @property
    def train_generator(self) -> str:
        """The generator whose samples detectors train on (``kl_ldm``)."""
        return self.profile.world.train_generator

    def cross_family_autoencoder(self, generator: str) -> str:
        """The world autoencoder of the other family than ``generator``'s (artifact removal)."""
        return cross_family_autoencoder(LDM_AE[self.generator(generator).ldm])

    def set_name(self, name: str) -> str:
        """This world's name of a set another notebook's table names (the same name here)."""
        return name

    @property
    def reference_ldm(self) -> str:
        """Name of LaRE's reference LDM (the profile's, ``kl_ldm``)."""
        return self.profile.models.ldm.removeprefix("mini:")

    @property
    def recon_autoencoder(self) -> str:
        """The autoencoder whose reconstructions train notebook 03's classifier (``kl_ae``)."""
        return self.profile.models.recon_autoencoder.removeprefix("mini:")

    @property
    def aeroblade_autoencoders(self) -> list[str]:
        """The generators' autoencoders, AEROBLADE's minimum runs over them."""
        return [ref.removeprefix("mini:") for ref in self.profile.models.aeroblade_autoencoders]

    def ldm(self, name: str) -> tuple:
        """(autoencoder, UNet, prompt encoder, scaling factor) of ``kl_ldm`` or ``vq_ldm``."""
        if name not in LDM_AE:
            raise KeyError(f"unknown LDM '{name}'; valid: {sorted(LDM_AE)}")
        if name not in self._models:
            self._models[name] = load_ldm_parts(name, self.profile.world.recipe)
        return self._models[name]

    def generated(self, name: str, split: str = "test") -> ImageSet:
        """Samples of a generator; classes cycle through the categories (balanced)."""
        path = self.folder / f"gen_{name}_{split}.safetensors"
        if path.is_file():
            return ImageSet.load(path)
        spec = self.generator(name)
        count = sample_count(self.profile.world, name, split)
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




