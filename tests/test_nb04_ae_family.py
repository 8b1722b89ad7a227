"""The autoencoder-family study (notebook 04): spectra, the train-AE × test-set matrix, sources.

Spectra are checked on synthetic residuals whose answer is known (a period-4 pattern, white
noise, a constant image). The matrix runs end to end on a duck-typed world whose "autoencoders"
leave patterns a tiny ConvNeXt learns in a few steps, and on folders with tiny random-weight
KL and VQ autoencoders (the ``full`` path).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lare2lib.core import paths
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.train import TrainConfig
from lare2lib.eval import metrics
from lare2lib.models.autoencoders import load_autoencoder
from lare2lib.models.tiny import make_tiny_kl, make_tiny_vq
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs
from lare2lib.studies import nb04_ae_family as A
from lare2lib.studies import nb04_figures as F
from lare2lib.studies import nb04_matrix as M
from lare2lib.studies import nb04_sources as S
from lare2lib.studies import nb04_spectra as SP

TINY = M.FamilyConfig(backbone="convnext_large", pretrained=False, crop_size=32,
                      create_kwargs=tiny_classifier_kwargs("convnext_large"), bootstrap=50)
LEARNER = M.FamilyConfig(backbone="resnet10t", pretrained=False, crop_size=32, bootstrap=50)
"""A BatchNorm ResNet learns the patterns below in a dozen steps; the tiny ConvNeXt does not."""


def smooth_images(count: int, side: int = 24, seed: int = 0) -> torch.Tensor:
    """uint8 ``(count, 3, side, side)`` smooth random images (low-pass noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, side // 4, side // 4, generator=generator)
    return (torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear") * 200 + 20).to(torch.uint8)


def periodic_pattern(side: int, period: int, amplitude: float) -> torch.Tensor:
    """A checkerboard-like pattern with the given period along both axes, ``(side, side)``."""
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return amplitude * torch.cos(2 * math.pi * x / period) * torch.cos(2 * math.pi * y / period)


def add_pattern(pixels: torch.Tensor, period: int, amplitude: float) -> torch.Tensor:
    pattern = periodic_pattern(pixels.shape[-1], period, amplitude)
    return (pixels.float() + pattern).clamp(0, 255).round().to(torch.uint8)


# -- spectra ----------------------------------------------------------------------------------


def test_grid_peak_finds_a_decoder_period_and_not_noise():
    real = smooth_images(16, 32)
    with_grid = add_pattern(real, 4, 6.0)
    generator = torch.Generator().manual_seed(1)
    noisy = (real.float() + torch.randn(real.shape, generator=generator) * 4).clamp(0, 255).round().to(torch.uint8)
    grid_spectrum = SP.residual_spectra(real, with_grid)
    noise_spectrum = SP.residual_spectra(real, noisy)
    assert grid_spectrum.shape == (32, 32)
    assert SP.grid_peak_db(grid_spectrum, 4) > 10.0
    assert abs(SP.grid_peak_db(noise_spectrum, 4)) < 1.5
    # the peak sits at 1/4 cycles per pixel: bin (16 + 8, 16 + 8) of the centred spectrum
    assert grid_spectrum[24, 24] > noise_spectrum[24, 24] + 2
    # a period that does not divide the side cannot be measured
    assert math.isnan(SP.grid_peak_db(grid_spectrum, 5))


def test_residual_spectra_refuses_unpaired_sets():
    with pytest.raises(ValueError, match="differ"):
        SP.residual_spectra(smooth_images(4, 32), smooth_images(4, 16))


def test_highpass_removes_constant_images_and_keeps_edges():
    flat = torch.full((2, 3, 16, 16), 90, dtype=torch.uint8)
    assert SP.highpass(flat).abs().max() < 1e-9
    edge = flat.clone()
    edge[:, :, :, 8:] = 200
    residual = SP.highpass(edge)
    assert residual.shape == (2, 16, 16)
    assert residual[:, :, 7:9].abs().min() > 5  # the step survives the high-pass
    assert SP.highpass_spectra(edge).shape == (16, 16)


def test_radial_profile_covers_zero_to_nyquist():
    spectrum = SP.residual_spectra(smooth_images(4, 32), add_pattern(smooth_images(4, 32), 4, 5.0))
    freq, values = SP.radial_profile(spectrum)
    assert len(freq) == len(values) == 16
    assert 0 < freq[0] < freq[-1] < 0.5
    assert np.isfinite(values).all()


def test_spectra_summary_reports_each_autoencoder_and_generated_set():
    real = smooth_images(8, 32)
    residual = {"a": SP.residual_spectra(real, add_pattern(real, 4, 6.0)),
                "b": SP.residual_spectra(real, add_pattern(real, 8, 6.0))}
    highpass = {"real": SP.highpass_spectra(real), "gen": SP.highpass_spectra(add_pattern(real, 4, 6.0))}
    summary = SP.spectra_summary(residual, {"a": 4, "b": 8}, {"a": 1.0, "b": 2.0}, highpass)
    assert summary["autoencoders"]["a"]["period"] == 4
    assert summary["autoencoders"]["a"]["grid_peak_db"] > 10
    assert summary["autoencoders"]["b"]["residual_rms"] == 2.0
    assert 0 <= summary["autoencoders"]["a"]["high_freq_share"] <= 1
    assert set(summary["highpass"]["gen"]) == {"grid_peak_db@4", "grid_peak_db@8"}
    assert summary["highpass"]["gen"]["grid_peak_db@4"] > 3  # relative to the reals' own peak
    assert SP.residual_rms(real, real) == 0.0


def test_center_stack_crops_and_skips_small_images():
    images = [torch.zeros(3, 40, 50, dtype=torch.uint8), torch.zeros(3, 10, 10, dtype=torch.uint8),
              torch.arange(3 * 32 * 32).reshape(3, 32, 32).to(torch.uint8)]
    stack = SP.center_stack(images, 32)
    assert stack.shape == (2, 3, 32, 32)
    assert torch.equal(stack[1], images[2])
    with pytest.raises(ValueError, match="at least"):
        SP.center_stack(images[1:2], 32)


# -- metrics of a row -------------------------------------------------------------------------


def test_matrix_row_matches_metrics_and_adds_intervals():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, 300).round(1)  # ties on purpose
    fakes = {"near": rng.normal(0.5, 1, 200).round(1), "far": rng.normal(4, 1, 200)}
    row = M.matrix_row(real, fakes, bootstrap=200, seed=0)
    assert set(row) == {"near", "far"}  # no "mean" across unlike sets
    for name, fake in fakes.items():
        scores = np.concatenate([real, fake])
        labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
        assert row[name]["auc"] == pytest.approx(metrics.roc_auc(scores, labels))
        # The vectorised intervals draw the resamples of the scalar bootstrap (one stream).
        assert row[name]["tpr@0.1%_ci"] == list(metrics.bootstrap_interval(
            lambda s, y: metrics.tpr_at_fpr(s, y, 0.001), scores, labels, resamples=200, seed=0))
        low, high = row[name]["tpr@0.1%_ci"]
        assert low <= row[name]["tpr@0.1%"] <= high
        assert row[name]["auc_ci"][0] <= row[name]["auc"] <= row[name]["auc_ci"][1]
    assert row["far"]["auc"] > 0.99 > row["near"]["auc"]
    cells = M.matrix_cells({"kl_ae": row})
    assert set(cells["kl_ae"]["far"]) == set(M.MATRIX_KEYS)


def test_world_autoencoders_follow_taef2_presence(monkeypatch):
    monkeypatch.setattr(paths, "taef2_dir", lambda: None)
    assert S.world_autoencoders() == ["kl_ae", "vq_ae"]
    assert S.world_autoencoders(False) == ["kl_ae", "vq_ae"]
    with pytest.raises(FileNotFoundError, match="LARE2_TAEF2_DIR"):
        S.world_autoencoders(True)
    monkeypatch.setattr(paths, "taef2_dir", lambda: Path("/somewhere"))
    assert S.world_autoencoders() == ["kl_ae", "vq_ae", "taef2"]
    assert S.world_autoencoders(False) == ["kl_ae", "vq_ae"]


# -- the matrix on a duck-typed world -----------------------------------------------------------


def textured(pixels: torch.Tensor, seed: int) -> torch.Tensor:
    """``pixels`` plus strong white noise: the fine detail an autoencoder does not reproduce."""
    generator = torch.Generator().manual_seed(seed)
    return (pixels.float() + torch.randn(pixels.shape, generator=generator) * 25).clamp(0, 255).round().to(torch.uint8)


class PatternWorld:
    """What WorldFamily reads from a world: reals are smooth images plus fine noise; the two
    "autoencoders" drop the noise and add a period-4 (``p4``) or period-8 (``p8``) pattern, the
    one "generator" makes smooth images with the period-4 pattern."""

    PERIODS = {"p4": 4, "p8": 8}

    def __init__(self, folder: Path):
        self.folder = folder
        sizes = {"train": 48, "val": 16, "test": 24}
        self.smooth = {split: smooth_images(n, 40, seed=k) for k, (split, n) in enumerate(sizes.items())}
        self.real = {split: self._set(f"real_{split}", textured(pixels, k), split)
                     for k, (split, pixels) in enumerate(self.smooth.items())}
        self.generators = [SimpleNamespace(name="gen4")]
        folder.mkdir(parents=True, exist_ok=True)
        for ae in self.PERIODS:  # cached like the world's own sets
            for split in sizes:
                self.reconstructions(ae, split).save(folder / f"recon_{ae}_{split}.safetensors")

    @staticmethod
    def _set(name: str, pixels: torch.Tensor, prefix: str) -> ImageSet:
        return ImageSet(name, pixels, torch.zeros(len(pixels), dtype=torch.long),
                        [f"{prefix}/{k}" for k in range(len(pixels))])

    def reconstructions(self, ae: str, split: str) -> ImageSet:
        recon = add_pattern(self.smooth[split], self.PERIODS[ae], 12.0)
        return self._set(f"recon_{ae}_{split}", recon, f"{split}@{ae}")

    def generated(self, name: str, split: str = "test") -> ImageSet:
        return self._set(name, add_pattern(smooth_images(24, 40, seed=9), 4, 12.0), name)

    def autoencoder(self, ae: str):
        levels = int(math.log2(self.PERIODS[ae])) + 1  # f = 2^(levels - 1)
        return SimpleNamespace(config=SimpleNamespace(block_out_channels=[8] * levels))


@pytest.mark.slow
def test_run_matrix_trains_a_row_per_autoencoder_and_resumes(tmp_path):
    world = PatternWorld(tmp_path / "world")
    config = M.FamilyConfig(**{**LEARNER.__dict__, "train_images": 32, "val_images": 8})
    source = S.WorldFamily(world, ["p4", "p8"], config, seed=0)
    train = TrainConfig(epochs=2, batch_size=16, lr=1e-3, early_stopping=0)
    printed = []
    result = M.run_matrix(source, tmp_path / "runs", train, progress=False,
                          on_row=lambda ae, row: printed.append(A.format_row(ae, row)))
    matrix = result["matrix"]
    assert list(matrix) == ["p4", "p8"]
    assert list(matrix["p4"]) == ["recon_p4", "recon_p8", "gen4"]
    assert result["n_train"] == {"p4": 32, "p8": 32} and result["n_val"]["p8"] == 8
    assert len(printed) == 2 and printed[0].startswith("p4: recon_p4 auc")
    # each row learned its own autoencoder's pattern
    assert matrix["p4"]["recon_p4"]["auc"] > 0.9
    assert matrix["p8"]["recon_p8"]["auc"] > 0.9
    assert len(result["scores"]["p4"]["real"]) == 24
    for row in matrix.values():
        for cell in row.values():
            assert cell["tpr@0.1%_ci"][0] <= cell["tpr@0.1%"] <= cell["tpr@0.1%_ci"][1]
    # a finished run is reloaded, not retrained, and scores the same
    again = M.run_matrix(source, tmp_path / "runs", train, progress=False)
    assert again["seconds"]["p4"]["resumed_from"] == len(result["history"]["p4"]) * 4
    assert again["matrix"]["p4"]["recon_p8"]["auc"] == pytest.approx(matrix["p4"]["recon_p8"]["auc"])
    # the spectra section sees each autoencoder's period
    spectra = SP.spectra(source)
    assert spectra["summary"]["autoencoders"]["p4"]["period"] == 4
    assert spectra["summary"]["autoencoders"]["p8"]["period"] == 8
    assert spectra["summary"]["autoencoders"]["p4"]["grid_peak_db"] > 3  # under the reals' noise
    assert set(spectra["highpass"]) == {"real", "gen4"}


def test_train_subset_is_the_same_pairs_for_every_autoencoder(tmp_path):
    world = PatternWorld(tmp_path / "world")
    config = M.FamilyConfig(**{**TINY.__dict__, "train_images": 10, "val_images": 4})
    source = S.WorldFamily(world, ["p4", "p8"], config, seed=3)
    (p4_train, p4_val, p4_key), (p8_train, _, p8_key) = source.train_val("p4"), source.train_val("p8")
    assert len(p4_train) == 20 and len(p4_val) == 8
    assert p4_key != p8_key
    for k in range(10):  # the real half is identical, and each recon is the recon of that real
        assert torch.equal(p4_train[k]["image"], p8_train[k]["image"])
        assert int(p4_train[k]["label"]) == 0 and int(p4_train[k + 10]["label"]) == 1
        index = [i for i in range(48) if torch.equal(world.real["train"].pixels[i], p4_train[k]["image"])]
        assert len(index) == 1
        expected = add_pattern(world.smooth["train"][index[0]][None], 4, 12.0)[0]
        assert torch.equal(p4_train[k + 10]["image"], expected)


def test_figures_have_one_panel_per_metric_and_set(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cell = {"auc": 0.9, "tpr@0.1%": 0.4, "tpr@0.1%_ci": [0.2, 0.6]}
    matrix = {"a": {"x": cell, "y": cell}, "b": {"x": cell, "y": cell}}
    assert len(F.matrix_figure(matrix).axes) == 2
    assert len(F.tpr_interval_figure(matrix).axes) == 1
    real = smooth_images(4, 32)
    residual = {"a": SP.residual_spectra(real, add_pattern(real, 4, 5.0))}
    highpass = {"real": SP.highpass_spectra(real), "g": SP.highpass_spectra(add_pattern(real, 4, 5.0))}
    fig = F.spectra_figure(residual, highpass)
    assert sum(ax.get_visible() for ax in fig.axes) >= 4  # spectrum, profile, two high-pass panels
    gallery = F.artifact_gallery(real, {"a": add_pattern(real, 4, 5.0)}, count=2)
    assert len(gallery.axes) == 2 * 3


# -- the full path: folders and named autoencoders ----------------------------------------------


def write_images(folder: Path, count: int, sizes=((40, 48), (32, 32)), seed: int = 0) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        height, width = sizes[k % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"im{k:02d}.png")


def test_folder_family_reconstructs_trains_and_tests(tmp_path):
    write_images(tmp_path / "train", 24)
    write_images(tmp_path / "test", 6, seed=1)
    write_images(tmp_path / "fake", 5, seed=2)
    refs = {"kl": str(make_tiny_kl(tmp_path / "kl")), "vq": str(make_tiny_vq(tmp_path / "vq", spatial_norm=False))}
    source = S.FolderFamily(refs, tmp_path / "train", tmp_path / "test", {"gen": tmp_path / "fake"},
                            tmp_path / "cache", TINY, val_fraction=0.25, device="cpu", progress=False)
    train, val, _ = source.train_val("kl")
    assert len(train) + len(val) == 2 * 24 and len(val) > 0
    assert train[0]["image"].shape == (3, 64, 64)  # a 2 × crop window (smaller images reflect-padded)
    real, fakes = source.test_sets()
    assert len(real[0]) == 6
    assert list(fakes) == ["recon_kl", "recon_vq", "gen"]
    assert all(i.endswith("@vq") for i in fakes["recon_vq"][1])
    assert source.factor("vq") == 8
    result = M.run_matrix(source, tmp_path / "runs", TrainConfig(epochs=1, batch_size=8, max_steps=2),
                          progress=False)
    assert set(result["matrix"]) == {"kl", "vq"}
    assert set(result["matrix"]["vq"]) == {"recon_kl", "recon_vq", "gen"}
    real_pixels, recon_pixels = source.pairs("kl", size=32)
    assert real_pixels.shape == recon_pixels.shape == (6, 3, 32, 32)
    assert set(source.generated(size=32)) == {"gen"}


def test_subset_reconstructions_equal_the_worlds_own(tmp_path):
    """Without a cached world set only the training subset is reconstructed, with the world's
    function, so its pixels are those the world's whole-split set would hold."""
    from lare2lib.world.autoencoder_training import reconstruct

    world = PatternWorld(tmp_path / "world")
    vae = load_autoencoder(make_tiny_kl(tmp_path / "kl"))
    world.profile = SimpleNamespace(seed=5)
    world.autoencoder = lambda ae: vae
    for path in world.folder.glob("recon_p4_train*"):
        path.unlink()  # the world has not built this set
    config = M.FamilyConfig(**{**TINY.__dict__, "train_images": 6, "val_images": 4})
    train, _, _ = S.WorldFamily(world, ["p4"], config, seed=2).train_val("p4")
    real = world.real["train"]
    full = reconstruct(vae, real.pixels, 5, real.ids)
    for k in range(6):
        index = real.ids.index(next(i for i in real.ids if torch.equal(real.pixels[real.ids.index(i)], train[k]["image"])))
        assert torch.equal(train[k + 6]["image"], full[index])
    assert not (world.folder / "recon_p4_train.safetensors").exists()  # the world's cache is left alone
