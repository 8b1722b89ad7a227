"""GenImage as a world: notebooks 01, 03 and 06 on the paper's data and models (the full profile).

Those notebooks study in-memory image sets through the mini world's interface
(:class:`lare2lib.world.build.World`). :class:`GenImageWorld` offers the same one over a GenImage
folder (``<subset>/{train,val}/{ai,nature}``) and the full profile's hub models::

    real["train"], real["val"]    reals of the training subset's train split (ImageNet train photos)
    real["test"]                  reals of every subset's val split (ImageNet val photos), one per file name
    generated(name, "test")       a subset's val fakes (``name``: its tag, e.g. "sdv4", "midjourney")
    generated(train, "train"/"val")  the training subset's train fakes
    reconstructions(ae, split)    reals through one of the profile's autoencoders (or TAEF2)
    load_reference(name)          the reference LDM (Stable Diffusion v1.5 by default)

**Identical processing.** Every image, real or generated, is decoded as the release's LaRE reads a
file (the profile's EXIF and alpha policies), brought to one square size (:attr:`Budget.fit`:
short-side resize then centre crop, or a native centre crop) and stored losslessly: GenImage's
reals are JPEGs of many sizes and its fakes PNGs of a few, and both classes pass through the same
steps (the released scripts instead read the files as they are: METHODS.md's format shortcut).

**A seeded sample.** GenImage holds 1.3 M images; a world holds at most :class:`Budget`'s counts
per set, picked by a hash of (seed, image id) so the pick is stable when files are added. Each set
is cached once under ``<data>/genimage_world/<key>/`` with the chosen files' (size, mtime)
fingerprint: a replaced file rebuilds its set. Files that cannot be decoded are skipped and
listed in :attr:`GenImageWorld.skipped`, never replaced by a placeholder.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from lare2lib.core.profiles import Profile
from lare2lib.data.imagesets import ImageSet

__all__ = ["Budget", "GenImageGenerator", "GenImageWorld", "generator_tag", "image_files", "model_name",
           "load_genimage_world"]

SPLITS = ("train", "val", "test")
SD_VAE_GENERATORS = frozenset({"sdv4", "sdv5", "wukong"})
"""GenImage subsets whose images left Stable Diffusion's KL VAE (Wukong is an SD v1 model)."""
FITS = ("resize", "crop")
"""How an image is brought to the world's square size (:attr:`Budget.fit`)."""


@dataclass(frozen=True)
class Budget:
    """How many images a GenImage world holds (defaults: a GPU run; :meth:`smoke`: the tests')."""

    train_images: int = 4000
    """Training reals (and as many training fakes of the training subset)."""
    val_images: int = 500
    """Validation reals (and fakes), held out of the training subset's train split by hash (at
    most a fifth of a small folder)."""
    test_images: int = 1000
    """Test reals (pooled over every subset's val split), and test fakes per subset."""
    image_size: int = 0
    """Side of every stored image (0: the LaRE size, 256)."""
    fit: str = "resize"
    """How an image becomes ``image_size``²: ``resize`` (short side to ``image_size``, bicubic, then
    the centre square: for LaRE, whose release squashes the whole image) or ``crop`` (the centre
    square of the native pixels, reflect-padded when smaller: the reconstruction detector's
    protocol, which crops native images so the decoder's trace is not resampled away)."""

    @classmethod
    def smoke(cls) -> Budget:
        return cls(train_images=12, val_images=3, test_images=6)

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"train,val,test"`` image counts (a notebook's ``GENIMAGE_SAMPLE``), e.g. ``"4000,500,1000"``."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"GenImage sample {text!r}: expected three positive counts 'train,val,test'")
        return cls(*(int(p) for p in parts))


@dataclass(frozen=True)
class GenImageGenerator:
    """One GenImage subset seen as a generator of the world."""

    name: str
    """Its tag as in the fakes' file names and the paper's tables (``sdv4``, ``adm``, ...)."""
    subset: str
    """Its folder under the GenImage root (the official download nests them)."""


def generator_tag(subset: str) -> str:
    """Short name of a subset folder: ``imagenet_ai_0419_sdv4`` → ``sdv4``, ``imagenet_glide`` → ``glide``."""
    last = Path(subset).name
    tag = re.sub(r"^imagenet_(ai_\d+_)?", "", last)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tag) or last


def model_name(ref: str) -> str:
    """A file-safe name for a model reference: ``stabilityai/stable-diffusion-2-1:vae`` →
    ``stable-diffusion-2-1-vae``, ``kandinsky-community/kandinsky-2-1:movq`` → ``kandinsky-2-1-movq``."""
    repo, _, subfolder = str(ref).partition(":")
    return "-".join(part for part in (Path(repo).name, subfolder) if part)


def _rank(seed: int, image_id: str) -> int:
    from lare2lib.core.rng import image_seed

    return image_seed(seed, image_id, "genimage-world")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` by extension, sorted (nothing is opened)."""
    from lare2lib.data.manifests import IMAGE_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _fingerprint(files: list[Path]) -> str:
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


class _Splits(Mapping):
    """``world.real``: the three splits, each read (or built) only when asked for."""

    def __init__(self, world: GenImageWorld):
        self.world = world

    def __getitem__(self, split: str) -> ImageSet:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; valid: {list(SPLITS)}")
        return self.world._set("real", split)

    def __iter__(self):
        return iter(SPLITS)

    def __len__(self) -> int:
        return len(SPLITS)


@dataclass
class GenImageWorld:
    """GenImage under the mini world's interface (see the module docstring)."""

    profile: Profile
    root: Path
    train_generator: str
    budget: Budget
    folder: Path
    val_classes: dict[str, int] | None = None
    progress: bool = False
    skipped: list[str] = field(default_factory=list)
    """``"<file>: <reason>"`` of every file left out because it could not be decoded."""
    _sets: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    # -- what the notebooks ask -----------------------------------------------------------

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        """ImageNet-1k's class names, then ``""`` (no class: the prompt "a photo")."""
        from lare2lib.data.imagenet import NUM_CLASSES, class_name

        return tuple(class_name(i) for i in range(NUM_CLASSES)) + ("",)

    @property
    def generators(self) -> list[GenImageGenerator]:
        return [GenImageGenerator(generator_tag(subset), subset) for subset in self.subsets]

    @cached_property
    def subsets(self) -> dict[str, dict[str, dict[str, Path]]]:
        """The root's subsets → split → label folder (:func:`~lare2lib.data.manifests.discover_genimage`), once."""
        from lare2lib.data.manifests import discover_genimage

        return discover_genimage(self.root)

    def generator(self, name: str) -> GenImageGenerator:
        specs = {g.name: g for g in self.generators}
        if name not in specs:
            raise KeyError(f"unknown GenImage generator '{name}'; found under {self.root}: {sorted(specs)}")
        return specs[name]

    def cross_family_autoencoder(self, generator: str) -> str:
        """An autoencoder of another family than ``generator``'s, for artifact removal: Kandinsky's
        MoVQ for the subsets decoded by SD's KL VAE (SD V1.4, V1.5, Wukong), SD 2.1's VAE for the
        others (pixel-space, VQ-diffusion, GAN and unknown models)."""
        self.generator(generator)
        vq = [name for name, ref in self.autoencoder_refs().items() if "movq" in ref or "kandinsky" in ref]
        return vq[0] if generator in SD_VAE_GENERATORS and vq else self.recon_autoencoder

    def set_name(self, subset: str) -> str:
        """This world's name of a GenImage subset folder (its generator tag), as other notebooks'
        tables name it (notebook 02 keys its test sets by folder)."""
        return generator_tag(subset)

    @property
    def reference_ldm(self) -> str:
        """Name of LaRE's reference LDM (the profile's, Stable Diffusion v1.5)."""
        return model_name(self.profile.models.ldm)

    @property
    def recon_autoencoder(self) -> str:
        """The autoencoder whose reconstructions train notebook 03's classifier (SD 2.1's VAE)."""
        return model_name(self.profile.models.recon_autoencoder)

    @property
    def aeroblade_autoencoders(self) -> list[str]:
        """The autoencoders AEROBLADE takes its minimum over (SD 1, SD 2, Kandinsky 2.1)."""
        return [model_name(ref) for ref in self.profile.models.aeroblade_autoencoders]

    def autoencoder_refs(self) -> dict[str, str]:
        refs = (self.profile.models.recon_autoencoder, *self.profile.models.aeroblade_autoencoders)
        return {model_name(ref): ref for ref in refs}

    def autoencoder(self, name: str):
        from lare2lib.models.autoencoders import load_autoencoder

        refs = self.autoencoder_refs()
        if name not in refs:
            raise KeyError(f"unknown autoencoder '{name}'; valid: {sorted(refs)}")
        if name not in self._models:
            self._models[name] = load_autoencoder(refs[name], device=self.profile.device, dtype=self.profile.dtype)
        return self._models[name]

    def load_reference(self, name: str):
        """:class:`~lare2lib.models.ldm.LDMComponents` of the reference LDM (its only LDM), loaded once
        (:func:`lare2lib.world.weights.world_ldm` calls it)."""
        from lare2lib.models.ldm import load_ldm

        if name != self.reference_ldm:
            raise KeyError(f"the GenImage world has one LDM, '{self.reference_ldm}' ({self.profile.models.ldm}); "
                           f"got '{name}'")
        key = f"ldm:{name}"
        if key not in self._models:
            self._models[key] = load_ldm(self.profile.models.ldm, device=self.profile.device,
                                         dtype=self.profile.dtype)
        return self._models[key]

    @property
    def real(self) -> Mapping[str, ImageSet]:
        """Reals per split; a split is built on first use."""
        return _Splits(self)

    def generated(self, name: str, split: str = "test") -> ImageSet:
        if split != "test" and name != self.train_generator:
            raise ValueError(f"only the training subset '{self.train_generator}' has '{split}' fakes; "
                             f"'{name}' has only 'test'")
        self.generator(name)
        return self._set(name, split)

    def reconstructions(self, ae_name: str, split: str = "test") -> ImageSet:
        """Reals of a split through an autoencoder (posterior sample seeded per id), cached."""
        path = self.folder / f"recon_{ae_name}_{split}.safetensors"
        source = self._set("real", split)
        ids = [f"{i}@{ae_name}" for i in source.ids]
        if path.is_file():
            cached = ImageSet.load(path)
            if cached.ids == ids:
                return cached
        if ae_name == "taef2":
            from lare2lib.world.build import taef2_reconstruct

            pixels = taef2_reconstruct(source.pixels, self.progress)
        else:
            from lare2lib.world.autoencoder_training import reconstruct

            pixels = reconstruct(self.autoencoder(ae_name), source.pixels, self.profile.seed, source.ids,
                                 batch_size=16, progress=self.progress)
        images = ImageSet(f"recon_{ae_name}_{split}", pixels, source.class_index.clone(), ids,
                          {"autoencoder": ae_name})
        images.save(path)
        return images

    # -- building the sets ----------------------------------------------------------------

    def _files(self, name: str, split: str) -> list[Path]:
        """The files of one set, in rank order (a hash of seed and id), at most the budget's count."""
        subsets, train_subset = self.subsets, self.generator(self.train_generator).subset
        if name == "real" and split == "test":
            by_name = {}
            for subset in subsets.values():
                for path in image_files(subset["val"]["nature"]) if "nature" in subset.get("val", {}) else []:
                    by_name.setdefault(path.name, path)
            candidates = list(by_name.values())
        else:
            subset = train_subset if name in ("real", self.train_generator) and split != "test" \
                else self.generator(name).subset
            label = "nature" if name == "real" else "ai"
            genimage_split = "val" if split == "test" else "train"
            folder = subsets[subset].get(genimage_split, {}).get(label)
            candidates = image_files(folder) if folder is not None else []
        ranked = sorted(candidates, key=lambda p: (_rank(self.profile.seed, p.name), p.name))
        if split == "test":
            return ranked[:self.budget.test_images]
        # validation never takes more than a fifth of a small training folder (at least one image)
        n_val = min(self.budget.val_images, max(1, len(ranked) // 5))
        return ranked[:n_val] if split == "val" else ranked[n_val:n_val + self.budget.train_images]

    def _set(self, name: str, split: str) -> ImageSet:
        key = (name, split)
        if key in self._sets:
            return self._sets[key]
        files = self._files(name, split)
        if not files:
            raise FileNotFoundError(f"GenImage world: no images for {name!r}/{split!r} under {self.root}")
        fingerprint = _fingerprint(files)
        set_name = f"real_{split}" if name == "real" else f"gen_{name}_{split}"
        path = self.folder / f"{set_name}.safetensors"
        images = ImageSet.load(path) if path.is_file() else None
        if images is None or images.meta.get("fingerprint") != fingerprint:
            images = self._decode(files, set_name, fingerprint)
            images.save(path)
        self.skipped += images.meta.get("skipped", [])
        self._sets[key] = images
        return images

    def _decode(self, files: list[Path], set_name: str, fingerprint: str) -> ImageSet:
        from tqdm.auto import tqdm

        from lare2lib.data.imagenet import NUM_CLASSES, class_index_from_filename
        from lare2lib.data.images import BadImageError, decode_image
        from lare2lib.data.transforms import center_crop

        size = self.budget.image_size or self.profile.lare.image_size
        lare = self.profile.lare
        pixels, classes, ids, skipped = [], [], [], []
        for path in tqdm(files, desc=f"GenImage {set_name}", disable=not self.progress):
            try:
                image = decode_image(path, exif=lare.exif_orientation, alpha=lare.alpha).image
            except BadImageError as error:
                skipped.append(f"{path}: {error.reason}")
                continue
            if self.budget.fit == "resize":
                scale = size / min(image.size)
                image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                                     resample=3)  # bicubic, Pillow's antialiased filter
            square = np.asarray(center_crop(image, size, pad_mode="reflect"), dtype=np.uint8)
            pixels.append(torch.from_numpy(square.copy()).permute(2, 0, 1))  # uint8 (3, size, size)
            index = class_index_from_filename(path.name, val_classes=self.val_classes)
            classes.append(NUM_CLASSES if index is None else index)
            ids.append(path.relative_to(self.root).as_posix())
        if not pixels:
            raise FileNotFoundError(f"GenImage world: none of the {len(files)} files of {set_name} decodes "
                                    f"({skipped[:3]})")
        return ImageSet(set_name, torch.stack(pixels), torch.tensor(classes), ids,
                        {"fingerprint": fingerprint, "size": size, "skipped": skipped})

    def check_prompts(self) -> None:
        """Refuse when, under the class prompt, the test reals would get "a photo" and the fakes
        their class (GenImage's ``ILSVRC2012_val_*`` reals without ``val_classes``)."""
        from lare2lib.signals.prompts import check_prompts_by_label, prompt_for

        names = self.class_names
        sets = [(self._set("real", "test"), 0)] + [(self._set(g.name, "test"), 1) for g in self.generators]
        prompts = [prompt_for(self.profile.lare.prompt, names[int(i)]) for s, _ in sets for i in s.class_index]
        labels = [label for s, label in sets for _ in range(len(s))]
        check_prompts_by_label(prompts, labels)


def load_genimage_world(profile: Profile, root: str | Path, train_subset: str = "sdv4", *,
                        budget: Budget | None = None, fit: str = "", val_classes: str | Path | None = None,
                        progress: bool = False) -> GenImageWorld:
    """The GenImage world of ``root`` (a GenImage download), training on ``train_subset``
    (``sdv4``, the benchmark's standard; ``sdv5`` as released). ``val_classes``: the classes of
    the ``ILSVRC2012_val_*`` reals (the release's ``anns/filename_to_folder.json``); under the
    class prompt the world refuses without it, naming the fix. ``fit`` (when given) replaces the
    budget's :attr:`Budget.fit`."""
    from lare2lib.core import paths
    from lare2lib.data.imagenet import load_val_classes
    from lare2lib.world.weights import sha256_file

    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"GenImage root {root} not found: set GENIMAGE_ROOT (or the profile's data_root) "
                                "to the folder holding <subset>/{train,val}/{ai,nature}")
    budget = budget or (Budget.smoke() if profile.smoke else Budget())
    budget = replace(budget, fit=fit) if fit else budget
    if budget.fit not in FITS:
        raise ValueError(f"unknown fit {budget.fit!r}; valid: {list(FITS)}")
    mapping = load_val_classes(val_classes) if val_classes else None
    key = {"root": str(root), "budget": budget.__dict__, "seed": profile.seed,
           "size": budget.image_size or profile.lare.image_size,
           "decode": [profile.lare.exif_orientation, profile.lare.alpha],
           "val_classes": sha256_file(Path(val_classes)) if val_classes else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    world = GenImageWorld(profile, root, "", budget, paths.data_dir() / "genimage_world" / digest, mapping,
                          progress)
    tags = [g.name for g in world.generators]
    chosen = [tag for tag in tags if tag == train_subset] or [tag for tag in tags if train_subset in tag]
    if len(chosen) != 1:
        raise ValueError(f"training subset {train_subset!r} matches {chosen or 'nothing'}; "
                         f"GenImage subsets under {root}: {tags}")
    world.train_generator = chosen[0]
    world.folder.mkdir(parents=True, exist_ok=True)
    world.check_prompts()
    return world
