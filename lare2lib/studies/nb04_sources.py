"""Notebook 04's data: a *family source* gives every row its training pairs and every column its test set.

:class:`WorldFamily` reads the mini or smoke world's cached sets; :class:`FolderFamily` (the
``full`` profile) folders of real and generated images and any autoencoders
:func:`lare2lib.models.autoencoders.load_autoencoder` understands, reconstructed at native resolution by
:func:`lare2lib.detectors.recon_classifier.reconstruct_folder`. Both expose the same calls
(``autoencoders``, ``config``, ``seed``, ``train_val``, ``test_sets``, ``pairs``, ``generated``,
``factor``), so the notebook has one code path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconPairs
from lare2lib.studies.nb04_matrix import FamilyConfig, Images
from lare2lib.studies.nb04_spectra import center_stack

__all__ = ["world_autoencoders", "WorldFamily", "FolderFamily"]


def world_autoencoders(include_taef2: bool | None = None) -> list[str]:
    """The world's autoencoders a row can train on: ``kl_ae``, ``vq_ae`` (+ ``taef2`` when found).

    ``include_taef2=None`` follows :func:`lare2lib.core.paths.taef2_dir`; ``True`` insists (a
    missing folder then raises with the variable to set), ``False`` leaves it out.
    """
    from lare2lib.core import paths

    found = paths.taef2_dir() is not None
    if include_taef2 and not found:
        raise FileNotFoundError("TAEF2 was asked for but not found: set LARE2_TAEF2_DIR to a folder "
                                "holding taef2_encoder.pth and taef2_decoder.pth")
    return ["kl_ae", "vq_ae"] + (["taef2"] if (found if include_taef2 is None else include_taef2) else [])


def _as_images(images: ImageSet) -> Images:
    return list(images.pixels), list(images.ids)


class WorldFamily:
    """The mini (or smoke) world as a family source: cached real, reconstruction and generated sets."""

    def __init__(self, world, autoencoders: Sequence[str] | None = None, config: FamilyConfig = FamilyConfig(),
                 seed: int = 0):
        from lare2lib.data.imagesets import subsample

        self.world = world
        self.autoencoders = list(autoencoders if autoencoders is not None else world_autoencoders())
        self.config = config
        self.seed = seed
        self._subsample = subsample

    def _pairs(self, ae: str, split: str, count: int) -> ReconPairs:
        # Equal-length sets and one seed draw the same indices: the subset stays paired.
        real = self._subsample(self.world.real[split], count, self.seed)
        return ReconPairs.from_sets(real, self._reconstructions(ae, split, real, count))

    def _reconstructions(self, ae: str, split: str, real: ImageSet, count: int) -> ImageSet:
        """``ae``'s reconstructions of the ``real`` subset: from the world's cached set when it
        exists (or the subset is the whole split), else only the subset, cached on its own.

        Both paths give the same pixels: the world reconstructs each image from (seed, id)
        alone (:func:`lare2lib.world.autoencoder_training.reconstruct`; TAEF2 is deterministic), whatever the batch.
        """
        if (self.world.folder / f"recon_{ae}_{split}.safetensors").is_file() or len(real) == len(self.world.real[split]):
            return self._subsample(self.world.reconstructions(ae, split), count, self.seed)
        from lare2lib.core import paths

        digest = hashlib.sha256("\n".join(real.ids).encode()).hexdigest()[:12]
        path = paths.data_dir() / "aefamily" / "recon" / self.world.folder.name / f"{ae}_{split}_{digest}.safetensors"
        if not path.is_file():
            if ae == "taef2":
                from lare2lib.world.build import taef2_reconstruct

                pixels = taef2_reconstruct(real.pixels, False)
            else:
                from lare2lib.world.autoencoder_training import reconstruct

                pixels = reconstruct(self.world.autoencoder(ae), real.pixels, self.world.profile.seed, real.ids)
            ImageSet(f"recon_{ae}_{split}", pixels, real.class_index.clone(), [f"{i}@{ae}" for i in real.ids],
                     {"autoencoder": ae, "subset_of": split}).save(path)
        return ImageSet.load(path)

    def train_val(self, ae: str) -> tuple[Dataset, Dataset, str]:
        """(train pairs, validation pairs, data fingerprint) of the row trained on ``ae``."""
        train = self._pairs(ae, "train", self.config.train_images)
        val = self._pairs(ae, "val", self.config.val_images)
        return train, val, f"{self.world.folder.name}:{ae}:{len(train)}:{len(val)}:{self.seed}"

    def test_sets(self) -> tuple[Images, dict[str, Images]]:
        """(held-out reals, {test set: images}): ``recon_<ae>`` for every autoencoder, then the generators."""
        fakes = {f"recon_{ae}": _as_images(self.world.reconstructions(ae, "test")) for ae in self.autoencoders}
        fakes |= {g.name: _as_images(self.world.generated(g.name, "test")) for g in self.world.generators}
        return _as_images(self.world.real["test"]), fakes

    def pairs(self, ae: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out (reals, their ``ae`` reconstructions), uint8 ``(N, 3, H, W)``, for the spectra."""
        return self.world.real["test"].pixels, self.world.reconstructions(ae, "test").pixels

    def generated(self) -> dict[str, torch.Tensor]:
        """uint8 ``(N, 3, H, W)`` test images of every generator, for the high-pass spectra."""
        return {g.name: self.world.generated(g.name, "test").pixels for g in self.world.generators}

    def factor(self, ae: str) -> int:
        """Pixels per latent along a side (the period of the decoder's upsampling grid)."""
        from lare2lib.detectors.recon_classifier import downsampling_factor

        if ae == "taef2":
            from lare2lib.models.taef2 import TAEF2_SCALE_FACTOR

            return TAEF2_SCALE_FACTOR
        return downsampling_factor(self.world.autoencoder(ae))


def _load_folder(folder: str | Path, limit: int = 0) -> Images:
    """Decoded images of a folder, sorted by id (the first ``limit``; 0 = all); bad files skipped."""
    from lare2lib.data.images import BadImageError, load_image
    from lare2lib.signals.extract import read_records

    records, _ = read_records(str(folder))
    records = sorted(records, key=lambda r: r.image_id)[: limit or None]
    images, ids = [], []
    for record in records:
        try:
            pil = load_image(record.path)
        except BadImageError:
            continue
        images.append(torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1))
        ids.append(record.image_id)
    return images, ids


class FolderFamily:
    """Folders and named autoencoders (the ``full`` profile) as a family source.

    Every autoencoder reconstructs the training and test reals at native resolution once
    (:func:`lare2lib.detectors.recon_classifier.reconstruct_folder`, resumable) into ``cache/<name>/{train,test}``;
    the validation split is a fixed hash share of the training ids (``val_fraction``). Training
    pairs are random crops inside a centre window of ``2 × crop`` (``ReconPairs.from_folder``).
    """

    def __init__(self, autoencoders: Mapping[str, str], real_train: str | Path, real_test: str | Path,
                 fakes: Mapping[str, str | Path], cache: str | Path, config: FamilyConfig = FamilyConfig(),
                 *, seed: int = 0, val_fraction: float = 0.05, test_images: int = 0, device: str = "auto",
                 progress: bool = True):
        if not autoencoders:
            raise ValueError("FolderFamily needs at least one autoencoder (name → reference)")
        self.refs = dict(autoencoders)
        self.autoencoders = list(self.refs)
        self.real_train, self.real_test = Path(real_train), Path(real_test)
        self.fakes = {name: Path(folder) for name, folder in fakes.items()}
        self.cache, self.config, self.seed = Path(cache), config, seed
        self.val_fraction, self.test_images = val_fraction, test_images
        self.device, self.progress = device, progress
        self._manifests: dict[tuple[str, str], dict] = {}
        self._factors: dict[str, int] = {}

    def _reconstructed(self, ae: str, split: str) -> dict:
        key = (ae, split)
        if key not in self._manifests:
            from lare2lib.detectors.recon_classifier import downsampling_factor, reconstruct_folder
            from lare2lib.models.autoencoders import load_autoencoder
            from lare2lib.models.devices import resolve_device

            model = load_autoencoder(self.refs[ae], device=resolve_device(self.device))
            self._factors[ae] = downsampling_factor(model)
            source = self.real_train if split == "train" else self.real_test
            self._manifests[key] = reconstruct_folder(source, self.cache / ae / split, model, ae_name=self.refs[ae],
                                                      seed=self.seed, progress=self.progress)
        return self._manifests[key]

    def train_val(self, ae: str) -> tuple[Dataset, Dataset, str]:
        """(train pairs, validation pairs, data fingerprint) of the row trained on ``ae``."""
        from lare2lib.detectors.recon_classifier.pairs import split_ids

        ids = self._reconstructed(ae, "train")["pairs"]
        train_ids, val_ids = split_ids(ids, self.val_fraction)
        if not val_ids or not train_ids:
            raise ValueError(f"val_fraction {self.val_fraction} leaves an empty split of {len(ids)} training images")
        rng = np.random.default_rng(self.seed)
        for name, count in (("train", self.config.train_images), ("val", self.config.val_images)):
            chosen = train_ids if name == "train" else val_ids
            if count and count < len(chosen):
                chosen = sorted(rng.choice(chosen, count, replace=False).tolist())
            if name == "train":
                train_ids = chosen
            else:
                val_ids = chosen
        window = dict(window=2 * self.config.crop_size)
        folder = self.cache / ae / "train"
        fingerprint = f"{self.refs[ae]}:{len(train_ids)}:{len(val_ids)}:{self.seed}"
        return (ReconPairs.from_folder(folder, train_ids, **window),
                ReconPairs.from_folder(folder, val_ids, **window), fingerprint)

    def test_sets(self) -> tuple[Images, dict[str, Images]]:
        """(held-out reals, {test set: images}): ``recon_<ae>`` for every autoencoder, then the fake folders."""
        real = _load_folder(self.real_test, self.test_images)
        fakes: dict[str, Images] = {}
        for ae in self.autoencoders:
            self._reconstructed(ae, "test")
            images, ids = _load_folder(self.cache / ae / "test" / "recon", self.test_images)
            fakes[f"recon_{ae}"] = (images, [f"{i}@{ae}" for i in ids])
        fakes |= {name: _load_folder(folder, self.test_images) for name, folder in self.fakes.items()}
        return real, fakes

    def pairs(self, ae: str, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out (reals, their ``ae`` reconstructions), centre ``size``² crops, uint8 ``(N, 3, size, size)``."""
        self._reconstructed(ae, "test")
        real, _ = _load_folder(self.cache / ae / "test" / "real", self.test_images)
        recon, _ = _load_folder(self.cache / ae / "test" / "recon", self.test_images)
        return center_stack(real, size), center_stack(recon, size)

    def generated(self, size: int = 256) -> dict[str, torch.Tensor]:
        """Centre ``size``² crops of every fake folder, uint8 ``(N, 3, size, size)``, for the high-pass spectra."""
        return {name: center_stack(_load_folder(folder, self.test_images)[0], size)
                for name, folder in self.fakes.items()}

    def factor(self, ae: str) -> int:
        """Pixels per latent along a side (the period of the decoder's upsampling grid)."""
        self._reconstructed(ae, "test")
        return self._factors[ae]

