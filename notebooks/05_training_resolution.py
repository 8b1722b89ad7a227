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
# # 05 · Training resolution: low vs high resolution, downscaled vs native, and LaRE's resize
#
# **Question.** Vesnin et al. train their reconstruction detector on LAION images at whatever
# resolution they come in, test on generators from 256² to 1024², and list "effect of training
# resolution" and "images above 512²" as open. A crop-based detector always sees a patch of
# the same size; what an image's resolution changes is *what is in the patch*: a heavily
# downscaled photo packs a whole scene into it, sharp to the pixel, while a native-resolution
# photo shows a small smooth region with the camera's and the codec's own pixel traces. Does a
# detector trained at one resolution work at another? On images larger than any it was trained
# on? And LaRE squashes every image to one size before encoding (256 in SD, 64 here): how does
# that resize interact with the image's resolution?
#
# **Method.** From the shipped photo corpus (split by photo as in the world: no photo on two sides)
# cut square **windows** of the world's 64 px at several **levels**: the photo downscaled
# (Lanczos, antialiased) to a 96 or 192 px short side, or its **native** pixels as stored in
# the corpus (short side at most 512 px, JPEG q92; no further
# resampling). Each window is reconstructed through the world's KL autoencoder (`kl_ae`) at
# its native size. One EfficientNet-Lite0 detector per training level (real vs its
# reconstruction, 48 px random crops, validation on the same level's validation photos), each
# tested on every level (reals and reconstructions of that level), on **large native images**
# (256 px windows of the largest test photos, 4× the training side; 1 and 10 random crops), and
# on the world's three generators (64 px images). Then LaRE (`kl_ldm`, t = 200, K = 4): the
# AUC of `−mean LaRE` for reconstructions against reals as a function of the input side, with
# the released squash to 64 px and, as the fix, with the map computed at the native size.

# %% tags=["parameters"]
from typing import Optional

PROFILE: str = "mini"  # profile: mini (default), smoke (tiny), or full (a folder of large photos, GPU)
SMOKE: bool = False  # tiny budgets (tests, CI): two levels, a few windows, two training steps per row
SEED: int = 0  # root seed: window positions, posterior samples, training order, inference crops
OUT_DIR: str = ""  # where figures and metrics.json go (empty: figures/05_training_resolution)
DATA_DIR: str = ""  # caches, the world and the level sets (empty: <repo>/data or $LARE2_DATA_DIR)
INTERACTIVE: bool = False  # show the ipywidgets browser of level windows after the static figures
LEVELS: Optional[str] = None  # training and test levels: short side (px) photos are downscaled to, or native (mini 96,192,native; smoke 64,native)
WINDOW: Optional[int] = None  # side of every level image (0: the world's 64 px; full: 256)
TRAIN_WINDOWS: Optional[int] = None  # training windows per level, spread over the training photos (mini 512, smoke 32)
VAL_WINDOWS: Optional[int] = None  # validation windows per level (mini 96, smoke 8)
TEST_WINDOWS: Optional[int] = None  # test windows per level (mini 256, smoke 16)
LARGE_WINDOW: Optional[int] = None  # side of the "larger than seen" native test images (0: 4 × WINDOW; smoke 96)
LARGE_PHOTOS: Optional[int] = None  # how many of the largest test photos give them (mini 4, smoke 2)
LARGE_WINDOWS: Optional[int] = None  # large test images in all (mini 64, smoke 8)
EPOCHS: Optional[int] = None  # maximum epochs per training level (mini 3, smoke 1)
EARLY_STOPPING: Optional[int] = None  # epochs without validation improvement before a row stops (2)
BATCH_SIZE: Optional[int] = None  # images per step (released and mini: 48, smoke 16)
LR: Optional[float] = None  # Adam learning rate (released: 1e-4)
TRIES: Optional[int] = None  # random crops averaged per test image (large images: 1 and 10 always; 1)
BOOTSTRAP: Optional[int] = None  # bootstrap resamples of the intervals (mini 1000; smoke 100 in the matrix, 1000 in the LaRE study)
BACKBONE: str = ""  # timm classifier or local weights file (empty: the profile's first recon classifier)
CROP: int = 0  # classifier crop (0: 48 in mini, 24 in smoke, 256 in full)
LARE_SIDES: Optional[str] = None  # input sides of the LaRE resize study, native windows of test photos (mini 32,64,128,256; smoke 16,32,64)
LARE_WINDOWS: Optional[int] = None  # images per side in the LaRE study, sides WINDOW and LARGE_WINDOW reuse the test sets (mini 128, smoke 8)
LARE_NATIVE_MAX: Optional[int] = None  # largest side whose LaRE map is also computed at native size (0: every side; mini 256, smoke 0)
THREADS: int = 0  # torch CPU threads (0: torch's default)
PHOTO_DIR: str = ""  # full profile: folder of large real photos (split by a hash of the file name)

# %%
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spin-waiting threads on a shared CPU
if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR

import dataclasses
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.plotting import save_figure, set_theme
from lare2lib.core.profiles import get_profile
from lare2lib.studies import nb05_figures, nb05_lare_resize, nb05_levels, nb05_resolution
from lare2lib.studies.common import study_config
from lare2lib.world.weights import world_ldm

started = time.time()
if THREADS:
    torch.set_num_threads(THREADS)
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
full = profile.name == "full"
# The profile's budget (smoke: two levels, a few windows, two steps per row), then every
# parameter set above: an explicit value wins over the smoke budget.
budget = study_config(nb05_resolution.Config, profile, levels=LEVELS, window=WINDOW, train_windows=TRAIN_WINDOWS,
                      val_windows=VAL_WINDOWS, test_windows=TEST_WINDOWS, large_window=LARGE_WINDOW,
                      large_photos=LARGE_PHOTOS, large_windows=LARGE_WINDOWS, lare_sides=LARE_SIDES,
                      lare_windows=LARE_WINDOWS, lare_native_max=LARE_NATIVE_MAX, backbone=BACKBONE,
                      crop_size=CROP, tries=TRIES, bootstrap=BOOTSTRAP, lare_bootstrap=BOOTSTRAP, epochs=EPOCHS,
                      early_stopping=EARLY_STOPPING, batch_size=BATCH_SIZE, lr=LR, seed=SEED)
config, family, train_config = budget.resolution(profile), budget.family(profile), budget.train
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir("05_training_resolution")
set_theme()
print(f"profile={profile.name} seed={SEED} threads={torch.get_num_threads()} "
      f"load={os.getloadavg()[0]:.1f} out={out_dir}")
print(config)

# %% [markdown]
# ## The level sets
#
# Mini: the world's photos (the catalogue of notebook 00; splits fixed per photo) and the
# world's `kl_ae`; LaRE with the world's `kl_ldm`, whose autoencoder this is. Full: a folder of
# large photos split by file-name hash, the profile's reconstruction autoencoder (SD 2.1 VAE)
# and its LaRE model (SD v1.5). Every set is cached under `data/resolution/`.

# %%
from lare2lib.models.autoencoders import load_autoencoder
from lare2lib.models.devices import resolve_device
from lare2lib.models.ldm import load_ldm

if full:
    if not PHOTO_DIR:
        raise ValueError("the full profile needs PHOTO_DIR: a folder of large real photos")
    photos = nb05_levels.folder_photos(PHOTO_DIR)
    autoencoder = load_autoencoder(profile.models.recon_autoencoder, device=resolve_device(profile.device))
    reference = load_ldm(profile.models.ldm, device=resolve_device(profile.device))
    class_names, lare_config, ae_key, world = ("photo",), dataclasses.replace(profile.lare, prompt="photo"), \
        profile.models.recon_autoencoder, None
else:
    from lare2lib.world.build import load_world

    world = load_world(profile, progress=False)
    photos = nb05_levels.world_photos(profile.world.max_photos)
    autoencoder = world.autoencoder("kl_ae")
    reference = world_ldm(world, "kl_ldm")
    class_names, lare_config, ae_key = world.class_names, profile.lare, f"{world.folder.name}:kl_ae"
data = nb05_levels.ResolutionData(photos, autoencoder, paths.data_dir() / "resolution", config, seed=SEED,
                                  ae_key=ae_key)
level_info = data.level_info()
sizes = nb05_levels.window_counts(data)
large_real, large_recon = data.large()
print("photos per split:", {s: len(data.split_photos(s)) for s in ("train", "val", "test")})
print("windows per level:", sizes)
print("levels:", json.dumps(level_info))
print(f"large native test images: {len(large_real)} of {config.large_window} px from",
      [p.photo_id for p in data.largest_test_photos()])

# %% [markdown]
# What a level looks like: held-out windows (left of each pair) and their reconstructions.
# The top rows hold most of a scene in 64 px; the native row a small patch of it.

# %%
fig = nb05_figures.level_gallery(data, "test", count=3, seed=SEED)
save_figure(fig, out_dir, "levels")
plt.show()

# %% [markdown]
# ## 1 · The training-resolution × test-resolution matrix
#
# One detector per row (cached and resumable under `data/resolution/`), scored on every test
# level, on the large native images (column `native_<side>`, 1 try) and on the generators.
# A row that stays high across its columns generalises across resolution; the diagonal is
# the easy case.

# %%
generators = {} if world is None else {g.name: (world.real["test"], world.generated(g.name))
                                       for g in world.generators}
result = nb05_resolution.run_resolution_matrix(
    data, data.folder / "runs", family, train_config, generators=generators, progress=False,
    on_row=lambda level, row: print(level, {test: round(cell["auc"], 3) for test, cell in row.items()}))
fig = nb05_figures.matrix_figure(result["matrix"])
save_figure(fig, out_dir, "resolution_matrix")
plt.show()

# %% [markdown]
# The large native images with 1 and 10 random crops (the paper's "1 try" and "10 tries"),
# and the world's generators (64 px samples against the world's 64 px held-out reals), per
# training level:

# %%
import pandas as pd

large_table = pd.DataFrame({level: {f"{k} {m}": v[m] for k, v in row.items() for m in ("auc", "tpr@0.1%")}
                            for level, row in result["large"].items()}).T
generator_table = pd.DataFrame({level: {g: v["auc"] for g, v in row.items()}
                                for level, row in result["generators"].items()}).T
display(large_table.round(3))
generator_table.round(3)

# %% [markdown]
# ## 2 · LaRE's squash resize
#
# Native windows of the test photos at several sides, each against its `kl_ae`
# reconstruction. LaRE as released squashes every image to the LDM's input size (dashed
# line) before encoding; a reconstruction's traces live at the pixel scale, so resampling
# either blurs them away (downscaling) or spreads them over several pixels (upscaling). The
# fix computes the map at the image's own size (the UNet is convolutional; its attention
# layers take any token count), up to `LARE_NATIVE_MAX`.

# %%
study = nb05_lare_resize.lare_resize_study(reference, data, class_names, lare_config, native=True,
                                           native_max_side=budget.lare_native_max, seed=SEED, batch_size=16,
                                           bootstrap=budget.lare_bootstrap)
fig = nb05_figures.lare_resize_figure(study, lare_config.image_size)
save_figure(fig, out_dir, "lare_resize")
plt.show()
pd.DataFrame({name: {side: row["auc"] for side, row in rows.items()} for name, rows in study.items()}).round(3)

# %% [markdown]
# ## 3 · The answer in this run
#
# Composed from the numbers above (nothing here is typed by hand):

# %%
display(Markdown(nb05_resolution.findings(result, study, lare_config.image_size, level_info)))

# %% [markdown]
# **How to read it, and its limits.** Read each row across: where it falls off is where
# the detector's notion of "reconstructed" stops matching the test images. A row that holds up
# on the large native images generalises to sizes above its training size *for this
# autoencoder*; the generator columns say whether the level the detector trained on matches
# the level the generated images live at (the world's samples imitate 64 px crops of photos
# downscaled to a 384 px short side, i.e. between the 96 and 192 levels). The mini world is
# small: 95 photos stored with a short side of at most 512 px (so "native" here is the
# corpus's stored pixels, already downscaled once from the originals), one f = 4 autoencoder, one seed per row, 64 px windows, and a few hundred test
# windows per level cut from only the test photos, so neighbouring windows are correlated and
# the intervals understate the spread over photos. At scale (SD 2.1 VAE, f = 8, 256 px crops
# of LAION-sized photos and 1024² generators; `PROFILE="full"` with `PHOTO_DIR`) the levels
# would span 512 px to native multi-megapixel photos, JPEG traces would matter more at the
# native level, and the LaRE squash would reduce a 1024² image by 4× per side.

# %% [markdown]
# ## 4 · Browser (interactive only)

# %%
if INTERACTIVE:
    import ipywidgets as widgets

    def browse(level: str, index: int) -> None:
        real, recon = data.real(level, "test"), data.recon(level, "test")
        index = min(index, len(real) - 1)
        fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
        delta = (recon.pixels[index].float() - real.pixels[index].float()).abs().mul(8).clamp(0, 255)
        for ax, image, title in zip(axes, (real.pixels[index], recon.pixels[index], delta.to(torch.uint8)),
                                    ("real", "recon", "|Δ|×8")):
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title)
            ax.set_axis_off()
        plt.show()

    widgets.interact(browse, level=list(config.levels), index=widgets.IntSlider(0, 0, config.test_windows - 1))

# %% [markdown]
# ## 5 · Headline numbers

# %%
metrics = nb05_resolution.write_metrics(out_dir, profile=profile, seed=SEED, data=data, family=family,
                                       train_config=train_config, result=result, study=study,
                                       lare_image_size=lare_config.image_size, level_info=level_info,
                                       sizes=sizes, started=started)
print(json.dumps({"matrix": metrics["matrix"], "lare_resize": metrics["lare_resize"],
                  "seconds": metrics["seconds"]}, indent=1, default=float))
