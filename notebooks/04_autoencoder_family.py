# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Autoencoder family: does a reconstruction detector trained on a VAE catch a MoVQ?
#
# **Question.** Vesnin et al. (arXiv 2411.06441) train a classifier on real images against
# their **SD 2.1 VAE** (KL) reconstructions and never show it a generated image; it still
# catches most LDMs, but is weakest on some, among them Kandinsky 3, whose decoder is a
# **MoVQ** (VQ). They leave open whether the *family* of the training autoencoder matters. So:
# a detector trained on KL reconstructions, tested on images of an LDM with a VQ decoder and on
# VQ reconstructions, and the reverse; with **TAEF2** (the real, pretrained tiny autoencoder of
# the FLUX.2 latent space) as a third training autoencoder when its weights are present.
#
# **Method.** One row per training autoencoder: an EfficientNet-Lite0 (ImageNet weights) with
# one logit, trained with the project's one loop (Adam 1e-4, BCE, grad clip 5, plateau
# schedule, best epoch chosen on the *validation* split) on real training crops (label 0)
# against **that autoencoder's reconstructions of the same crops** (label 1), random 48 px crops
# of the 64 px images. Every row sees the same real crops; only the autoencoder differs.
# Columns: held-out reals against every autoencoder's reconstructions of them and against
# every generator's samples (`kl_ldm`, `kl_ldm_fast`: KL decoder; `vq_ldm`: VQ decoder). Cells:
# ROC AUC and TPR at 0.1 % FPR (the paper's metric, in the ROC definition: the largest TPR whose
# FPR on the reals is at most 0.1 %), with percentile-bootstrap intervals (reals and fakes resampled separately).
#
# **What the artifacts look like.** The mean log-magnitude spectrum of `recon − real` per
# autoencoder: a decoder that upsamples by `f` leaves energy on a grid of `k/f` cycles per
# pixel, and what it cannot reproduce shows as a bright high-frequency band. Generated images
# have no real twin; their *high-pass residual* (image minus its Gaussian blur) is compared
# with that of the reals.

# %% tags=["parameters"]
from typing import Optional

PROFILE: str = "mini"  # profile: mini (default), smoke (tiny), or full (folders + real autoencoders, GPU)
SMOKE: bool = False  # tiny budgets (tests, CI): one short epoch per row, the whole tiny world
SEED: int = 0  # root seed: training order and crops, the shared training subset, inference crops
OUT_DIR: str = ""  # where figures and metrics.json go (empty: figures/04_autoencoder_family)
DATA_DIR: str = ""  # caches, the built world and the training runs (empty: <repo>/data or $LARE2_DATA_DIR)
INTERACTIVE: bool = False  # show the ipywidgets browser of reconstructions after the static figures
TAEF2: str = "auto"  # third training autoencoder: auto (when its weights are found), yes (required), no
TRAIN_IMAGES: Optional[int] = None  # real training crops per row, the same seeded subset for every row (0: all; mini 1536, smoke all)
VAL_IMAGES: Optional[int] = None  # real validation crops per row (0: all; mini and smoke all)
EPOCHS: Optional[int] = None  # maximum epochs per row, early stopping on the validation AUC may end one sooner (mini 3, smoke 1)
EARLY_STOPPING: Optional[int] = None  # epochs without validation improvement before a row stops (2)
BATCH_SIZE: Optional[int] = None  # images per step (released and mini: 48, smoke 16)
LR: Optional[float] = None  # Adam learning rate (released: 1e-4)
TRIES: Optional[int] = None  # random crops averaged per test image (the paper's "1 try"; 0: centre crop; 1)
BOOTSTRAP: Optional[int] = None  # bootstrap resamples of the AUC and TPR intervals (mini 1000, smoke 100)
BACKBONE: str = ""  # timm classifier or local weights file (empty: the profile's first recon classifier)
CROP: int = 0  # crop side (0: 48 in mini, 24 in smoke, 256 in full)
THREADS: int = 0  # torch CPU threads (0: torch's default)
REAL_TRAIN_DIR: str = ""  # full profile: folder of real training images
REAL_TEST_DIR: str = ""  # full profile: folder of real test images
FAKE_DIRS: str = ""  # full profile: generated test folders, comma-separated name/folder pairs joined by an equals sign
AUTOENCODERS: str = ""  # full profile: comma-separated name/model pairs joined by an equals sign (empty: the profile's SD 2.1 VAE and Kandinsky MoVQ, + TAEF2)
TEST_IMAGES: int = 0  # full profile: at most this many test images per folder (0: all)

# %%
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spin-waiting threads on a shared CPU
if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.plotting import save_figure, set_theme
from lare2lib.core.profiles import get_profile
from lare2lib.studies import nb04_ae_family, nb04_figures, nb04_matrix, nb04_sources, nb04_spectra
from lare2lib.studies.common import study_config

started = time.time()
if THREADS:
    torch.set_num_threads(THREADS)
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
# The profile's budget (smoke: every row and column, two steps of training each), then every
# parameter set above: an explicit value wins over the smoke budget.
config = study_config(nb04_ae_family.Config, profile, backbone=BACKBONE, crop_size=CROP,
                      train_images=TRAIN_IMAGES, val_images=VAL_IMAGES, tries=TRIES, bootstrap=BOOTSTRAP,
                      epochs=EPOCHS, early_stopping=EARLY_STOPPING, batch_size=BATCH_SIZE, lr=LR, seed=SEED)
family, train_config = config.family(profile), config.train
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir("04_autoencoder_family")
set_theme()
print(f"profile={profile.name} seed={SEED} threads={torch.get_num_threads()} "
      f"load={os.getloadavg()[0]:.1f} out={out_dir}")

# %% [markdown]
# ## The data
#
# Mini: the world of notebook 00 — real 64 px crops split by photo, their cached
# reconstructions through `kl_ae` (an SD-shaped KL VAE, f = 4), `vq_ae` (a MoVQ-shaped VQ
# model, f = 4) and TAEF2 (f = 8, 32 latent channels, trained on far more than these photos),
# and the three generators' test samples. Full: folders of real and generated images, each real
# reconstructed at native resolution by every autoencoder named in `AUTOENCODERS`.

# %%
if profile.name == "full":
    if not (REAL_TRAIN_DIR and REAL_TEST_DIR):
        raise ValueError("the full profile needs REAL_TRAIN_DIR and REAL_TEST_DIR (folders of real images), "
                         "FAKE_DIRS='name=dir,...' for generated test sets, and optionally AUTOENCODERS")
    refs = dict(item.split("=", 1) for item in AUTOENCODERS.split(",") if item) or {
        "sd21_vae": profile.models.recon_autoencoder, "movq": profile.models.aeroblade_autoencoders[-1]}
    if TAEF2 != "no" and paths.taef2_dir() is not None and not AUTOENCODERS:
        refs["taef2"] = str(paths.taef2_dir())
    fakes = dict(item.split("=", 1) for item in FAKE_DIRS.split(",") if item)
    source = nb04_sources.FolderFamily(refs, REAL_TRAIN_DIR, REAL_TEST_DIR, fakes,
                                       paths.data_dir() / "aefamily" / "pairs", family, seed=SEED,
                                       test_images=TEST_IMAGES, device=profile.device)
    family_of, world = {}, None
else:
    from lare2lib.world.build import load_world
    from lare2lib.world.weights import LDM_AE

    world = load_world(profile, progress=False)
    include = {"auto": None, "yes": True, "no": False}[TAEF2]
    source = nb04_sources.WorldFamily(world, nb04_sources.world_autoencoders(include), family, seed=SEED)
    family_of = {g.name: LDM_AE[g.ldm] for g in world.generators}
real_test, test_fakes = source.test_sets()
print("training autoencoders:", source.autoencoders)
print("test sets:", {"real": len(real_test[0])} | {name: len(images) for name, (images, _) in test_fakes.items()})

# %% [markdown]
# ## 1 · What each autoencoder does to an image
#
# Two held-out crops: the real, then per autoencoder its reconstruction and the absolute
# difference amplified 8×. This difference is the whole training signal of a row.

# %%
spectra = nb04_spectra.spectra(source)
fig = nb04_figures.artifact_gallery(spectra["real"], spectra["recon"], count=2, gain=8.0, seed=SEED)
save_figure(fig, out_dir, "reconstructions")
plt.show()

# %% [markdown]
# ## 2 · Residual spectra: the autoencoders' fingerprints
#
# **Top:** mean log |FFT| of the luminance of `recon − real` over the held-out crops, one
# colour scale for all autoencoders (brighter = more residual at that frequency; centre = zero
# frequency, corners = 0.5 cycles/pixel), and their radial profiles. **Bottom:** the high-pass
# residual spectrum of the reals, then each generator's *minus* the reals' in dB (red: more
# energy than in real photos). The table: the grid peak (how far the `k/f` bins stand out from
# their neighbours), the share of residual energy above 1/4 cycle/px, and the residual RMS.

# %%
fig = nb04_figures.spectra_figure(spectra["residual"], spectra["highpass"])
save_figure(fig, out_dir, "residual_spectra")
plt.show()
summary = spectra["summary"]
print(json.dumps(summary, indent=1, default=float))

# %% [markdown]
# ## 3 · The train-autoencoder × test-set matrix
#
# One detector per row, trained (or reloaded: runs are cached and resumable under
# `data/aefamily/`) and scored on every column. The diagonal of the `recon_*` block is each
# detector on its own task; off the diagonal is cross-family transfer; the generator columns
# are the question that matters.

# %%
result = nb04_matrix.run_matrix(source, nb04_ae_family.run_root(source, train_config, profile), train_config,
                                progress=False, on_row=lambda ae, row: print(nb04_ae_family.format_row(ae, row)))
matrix = result["matrix"]
fig = nb04_figures.matrix_figure(matrix)
save_figure(fig, out_dir, "matrix")
plt.show()

# %% [markdown]
# TPR at 0.1 % FPR with its interval, per column and row: with fewer than 1000 held-out reals
# the threshold is the single highest real score, so one unusual real image moves the whole
# column; overlapping intervals mean the rows are not distinguishable at this operating point.

# %%
fig = nb04_figures.tpr_interval_figure(matrix)
save_figure(fig, out_dir, "tpr_intervals")
plt.show()
nb04_matrix.matrix_frame(matrix, "auc").round(3)

# %% [markdown]
# ## 4 · The answer in this run
#
# Composed from the numbers above (nothing here is typed by hand):

# %%
display(Markdown(nb04_ae_family.findings(matrix, summary, family_of, n_real=len(real_test[0]))))

# %% [markdown]
# **How to read it, and its limits.** The question is settled per column: a row generalises
# across families if its AUC and TPR on the other family's generator and reconstructions stay
# near its own-family numbers. The mini world is small in every direction that matters here:
# 64 px crops of a few dozen photos, autoencoders of about two million parameters trained on
# those photos (TAEF2 excepted: trained elsewhere, on far more), f = 4 instead of SD's f = 8,
# one seed and a few epochs per row (the validation curve in `metrics.json` says whether a row
# had converged), and a few hundred held-out reals, so TPR at 0.1 % FPR is decided by one image.
# A TAEF2 row that stays near chance says its reconstructions are too close to the reals for
# this detector and budget, not that no detector could separate them. At scale (SD 2.1
# VAE vs Kandinsky's MoVQ, 256 px crops of LAION-sized images, thousands of reals; run this
# notebook with `PROFILE="full"`) the decoders share much more architecture than the two mini
# models do (MoVQ is a VQGAN decoder with spatial normalisation; the VAE a KL one with the
# same up-blocks), so cross-family transfer can be better *or* worse than here; what carries
# over is the method: read the generator columns with their intervals, not the diagonal.

# %% [markdown]
# ## 5 · Browser (interactive only)

# %%
if INTERACTIVE:
    import ipywidgets as widgets

    def browse(index: int, gain: float) -> None:
        pick = slice(index, index + 1)
        nb04_figures.artifact_gallery(spectra["real"][pick], {ae: r[pick] for ae, r in spectra["recon"].items()},
                                      count=1, gain=gain)
        plt.show()

    widgets.interact(browse, index=widgets.IntSlider(0, 0, len(spectra["real"]) - 1),
                     gain=widgets.FloatSlider(value=8.0, min=1.0, max=32.0, step=1.0))

# %% [markdown]
# ## 6 · Headline numbers

# %%
metrics = nb04_ae_family.write_metrics(out_dir, profile=profile, seed=SEED, source=source,
                                      train_config=train_config, result=result, spectra=spectra,
                                      family_of=family_of, n_test_real=len(real_test[0]), started=started)
print(json.dumps({"matrix": metrics["matrix"], "seconds": metrics["seconds"]}, indent=1, default=float))
