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
# # 01 · LaRE: the latent reconstruction error, what it sees and what it costs
#
# LaRE² (Luo et al., CVPR 2024) detects diffusion-generated images with **one** network pass
# of a reference latent diffusion model (LDM). For an image x:
#
# ```
# z0  = VAE posterior sample of x, times the latent scaling factor       (C, h, w)
# z_t = sqrt(ᾱ_t) z0 + sqrt(1 − ᾱ_t) ε                 for K noise draws ε, t = 200
# LaRE(x) = mean over the K draws of (UNet(z_t, t, "a photo of a {class}") − ε)²   (C, h, w)
# ```
#
# The premise (the paper's Fig. 1b): a diffusion model predicts the noise **better on generated
# images** than on real photos, so their LaRE is lower, most clearly near t ≈ 200. The paper
# then feeds the map to a classifier (EGRE, notebook 02); here we look at the map itself:
#
# 1. LaRE maps of real and generated images, side by side;
# 2. how well the **mean LaRE alone** separates held-out reals from each generator (AUC);
# 3. the single-step loss over t, the paper's Fig. 1b redrawn in the mini world;
# 4. what the ensemble size K buys;
# 5. what it costs, against a DIRE-style baseline and the released per-image loop.
#
# **Sign convention.** The score is −mean LaRE and generated images are the positive class:
# AUC = P(LaRE(generated) < LaRE(real)). Above 0.5 the premise holds; 0.5 is chance.
#
# The reference model is the mini world's `kl_ldm` (notebook 00): an SD-shaped LDM (KL
# autoencoder, class-conditional UNet, SD's DDPM schedule) trained on the world's real photos,
# standing in for Stable Diffusion v1.5. With `PROFILE="full"` the same sections run on the paper's
# setting: Stable Diffusion v1.5 as the reference, GenImage's eight subsets as the generators and
# ImageNet val photos as the reals (a seeded sample of each, every image resized to a 256 px short
# side and centre-cropped the same way: `lare2lib.world.genimage`). Extraction follows the released code (posterior sample,
# K draws sharing one latent, squared ε error, float32), batched, with every random number drawn
# per image from (seed, image id).

# %% tags=["parameters"]
from typing import Optional

PROFILE: str = "mini"  # profile: mini (default), smoke (tiny), or full (GenImage + Stable Diffusion v1.5, GPU)
SMOKE: bool = False  # tiny budgets (tests, CI): a few images, one repeat
SEED: int = 0  # root seed: posterior samples and noise draws are drawn per image from it
OUT_DIR: str = ""  # where figures and metrics.json go (empty: figures/01_lare)
DATA_DIR: str = ""  # caches and the built world (empty: <repo>/data or $LARE2_DATA_DIR)
INTERACTIVE: bool = False  # show the ipywidgets explorer (image, t, K) after the static figures
# Budget parameters: None takes the profile's value (nb01_lare.Config: the mini defaults in
# brackets, or its smoke() budget); any value you set wins, in smoke mode too.
TIMESTEP: Optional[int] = None  # LaRE timestep t (200 as released; older configs 261, 280)
ENSEMBLE: Optional[int] = None  # noise draws K per image, averaged (4 as released; older configs 8)
N_IMAGES: Optional[int] = None  # images per set for maps and AUC, 0 for all (256)
CURVE_IMAGES: Optional[int] = None  # images per set for the loss-over-t curves (128)
CURVE_TIMESTEPS: Optional[str] = None  # comma-separated t grid ("20,50,100,...,900,980")
ENSEMBLE_SIZES: Optional[str] = None  # K values of the ensemble study ("1,2,4,8,16")
ENSEMBLE_IMAGES: Optional[int] = None  # images per set for the ensemble study (96)
BOOTSTRAP: Optional[int] = None  # bootstrap resamples of the AUC intervals (1000)
COST_IMAGES: Optional[int] = None  # images timed per cost variant; DIRE, per-image: a quarter (64)
COST_BATCH: Optional[int] = None  # batch size of the batched variants (32)
DIRE_STEPS: Optional[int] = None  # DDIM steps each way of the DIRE-style baseline (20, as DIRE)
COST_REPEATS: Optional[int] = None  # timed repeats after one warm-up; the fastest is kept (3)
NUM_WORKERS: Optional[int] = None  # DataLoader decoding processes of the driver (0: main process)
GENIMAGE_ROOT: str = ""  # full profile: GenImage root (<subset>/{train,val}/{ai,nature})
TRAIN_SUBSET: str = "sdv4"  # full profile: the training subset (notebook 01 trains nothing; it names the world)
VAL_CLASSES: str = ""  # full profile: class of each ILSVRC2012_val_* real (the release's anns/filename_to_folder.json)
GENIMAGE_SAMPLE: str = ""  # full profile: images per set of the GenImage sample, "train,val,test" (empty: 4000,500,1000)

# %%
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.plotting import save_figure, set_theme
from lare2lib.core.profiles import get_profile
from lare2lib.data import imagesets
from lare2lib.signals import set_maps
from lare2lib.signals.lare import latent_shape
from lare2lib.studies import nb01_cost, nb01_figures, nb01_lare
from lare2lib.studies.common import load_study_world, study_config
from lare2lib.world.weights import world_ldm

started = time.time()
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
budget = study_config(
    nb01_lare.Config, profile, timestep=TIMESTEP, ensemble=ENSEMBLE, n_images=N_IMAGES,
    curve_images=CURVE_IMAGES, curve_timesteps=CURVE_TIMESTEPS, ensemble_sizes=ENSEMBLE_SIZES,
    ensemble_images=ENSEMBLE_IMAGES, bootstrap=BOOTSTRAP, cost_images=COST_IMAGES,
    cost_batch=COST_BATCH, dire_steps=DIRE_STEPS, cost_repeats=COST_REPEATS, num_workers=NUM_WORKERS)
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir("01_lare")
timesteps, ensemble_sizes = budget.timesteps, budget.ks
set_theme()
torch.manual_seed(SEED)
print(f"profile={profile.name} seed={profile.seed} t={budget.timestep} K={budget.ensemble} "
      f"threads={torch.get_num_threads()} out={out_dir}")

# %% [markdown]
# ## The world and the reference model
#
# Held-out **test** reals (photos no model saw in training) against the test samples of the
# three generators: `kl_ldm` (the reference model's own samples), `vq_ldm` (a second LDM with a
# VQ autoencoder) and `kl_ldm_fast` (the reference LDM with a different sampler: 5× fewer,
# stochastic DDIM steps, no guidance). All sets are 8-bit and stored losslessly the same way.
# Full: SD v1.5 as the reference and each GenImage subset's val fakes against ImageNet val reals.

# %%
world = load_study_world(profile, genimage_root=GENIMAGE_ROOT, train_subset=TRAIN_SUBSET, val_classes=VAL_CLASSES,
                         sample=GENIMAGE_SAMPLE)
reference = world_ldm(world, world.reference_ldm)
config = budget.lare_config(profile.lare)
generators = [spec.name for spec in world.generators]
sets = {"real": world.real["test"]} | {name: world.generated(name) for name in generators}
analysis = {name: imagesets.subsample(images, budget.n_images, SEED) for name, images in sets.items()}
print({name: len(images) for name, images in analysis.items()}, "| reference:", reference.name,
      "| LaRE map shape:", latent_shape(reference.vae, config.image_size))

# %% [markdown]
# ## 1 · LaRE maps, real vs generated
#
# Each row: an image, its LaRE map per latent channel, and the channel mean. Channel panels
# share one colour scale and mean panels another (clipped at the 99th percentile of what is
# shown), so brighter means a larger error everywhere. The map has the latent's resolution
# (the autoencoder downsamples by 4 here, by 8 in SD): LaRE is a coarse, noisy map, which is
# why the paper learns what to do with it (EGRE) instead of thresholding it.

# %%
maps = {name: set_maps.lare_maps(reference, images, world.class_names, config, seed=SEED,
                                batch_size=budget.cost_batch)
        for name, images in analysis.items()}
fig = nb01_figures.map_gallery({name: (analysis[name], maps[name]) for name in maps}, per_set=2)
save_figure(fig, out_dir, "lare_maps")
plt.show()

# %% [markdown]
# ## 2 · How far does the mean LaRE alone go?
#
# The simplest detector: average the map to one number and threshold it. The AUC below needs
# no threshold; its interval is a percentile bootstrap with reals and generated images
# resampled separately. If the premise holds, a generator's samples score above 0.5; an
# interval that excludes 0.5 *from below* means the premise is reversed for that generator.
#
# Things to compare when reading it: `kl_ldm` and `kl_ldm_fast` are the **same weights** as the
# reference, sampled differently (25 deterministic DDIM steps with classifier-free guidance 2
# against 5 stochastic steps without guidance), so any difference between them comes from the
# sampler alone; `vq_ldm` has its own autoencoder and UNet, so it tests whether the signal
# transfers to a model LaRE was not computed with. Notebook 00 measured the same premise with
# each generator's *own* LDM during training; the mean LaRE here is the paper's setting, one
# reference model for every image.
#
# On GenImage (full profile) the same reading applies: `sdv5` is SD v1.5's own samples, `sdv4` and
# `wukong` come from sibling SD models (same autoencoder), `midjourney` from an unknown LDM,
# `adm`, `glide` and `biggan` from pixel-space models and `vqdm` from a VQ diffusion model.

# %%
mean_lare = {name: m.mean(dim=(1, 2, 3)).numpy() for name, m in maps.items()}
auc = nb01_lare.auc_table(mean_lare, real="real", resamples=budget.bootstrap, seed=SEED)
fig = nb01_figures.auc_figure(mean_lare, auc)
save_figure(fig, out_dir, "mean_lare_auc")
plt.show()
auc[["auc", "low", "high", "n_real", "n_generated"]]

# %% [markdown]
# ## 3 · The single-step loss over t (the paper's Fig. 1b)
#
# Mean loss (K = 1 draw per t; one latent sample per image shared by every t) over a grid of
# timesteps. **Left:** every set scored by the common reference `kl_ldm`, as LaRE scores
# every image with SD v1.5. **Right:** `vq_ldm`'s samples scored by their own LDM, against the
# same reals scored by that LDM (`kl_ldm` and `kl_ldm_fast` already are their own model's on
# the left). Shaded: ±1 standard error over images. At large t the noise dominates z_t and
# every curve meets; at small t the UNet sees nearly clean latents; the paper finds the gap
# largest around t ≈ 200 (dotted line).
# On GenImage there is one LDM (SD v1.5), so only the left panel is drawn.

# %%
curve_sets = {name: imagesets.subsample(images, budget.curve_images, SEED) for name, images in sets.items()}
common = nb01_lare.curve_summary(nb01_lare.loss_curves(
    reference, curve_sets, world.class_names, timesteps, seed=SEED, batch_size=budget.cost_batch))
own_generator = nb01_lare.own_model(world)  # vq_ldm in the mini world; None on GenImage (one LDM)
own = nb01_lare.own_model_curves(world, curve_sets, own_generator, timesteps, seed=SEED,
                                 batch_size=budget.cost_batch)
fig = nb01_figures.timestep_panels(common, own, world.reference_ldm, own_generator, budget.timestep)
save_figure(fig, out_dir, "loss_over_timesteps")
plt.show()
gap = nb01_lare.curve_gap(common, real="real")
gap.round(4)

# %% [markdown]
# The table: mean loss of the reals minus that of each generator at each t (positive: the
# premise holds at that t), scored by `kl_ldm`.
#
# ## 4 · Ensemble size K
#
# Each draw of ε gives a different squared error; LaRE averages K of them. Draw the errors of
# up to 16 draws once, then average the first K: the **split-half correlation** compares the
# K-draw map of draws 1..K with that of draws K+1..2K of the same image (1 = a reproducible
# map), and the AUC uses the mean of the first K draws. Top row: one real image's map as K
# grows. More draws cost K UNet passes each; the paper settled on K = 4.

# %%
draws = max(ensemble_sizes)
study_sets = {name: imagesets.subsample(images, budget.ensemble_images, SEED) for name, images in sets.items()}
errors = {name: nb01_lare.draw_errors(reference, images, world.class_names, draws, config,
                                    seed=SEED, batch_size=max(1, budget.cost_batch // 4))
          for name, images in study_sets.items()}
study = nb01_lare.ensemble_study(errors, ensemble_sizes, real="real")
fig = nb01_figures.ensemble_figure(study, errors["real"][0], ensemble_sizes,
                              title=f"t = {budget.timestep}, {budget.ensemble_images} images per set")
save_figure(fig, out_dir, "ensemble_size")
plt.show()
study.pivot(index="K", columns="set", values=["split_half_corr", "auc"]).round(3)

# %% [markdown]
# ## 5 · What it costs
#
# All variants run in this one process, on the same weights and images, one after the other:
# one untimed warm-up run each, then `COST_REPEATS` timed runs, the fastest kept. Ratios are
# what to read; absolute numbers depend on the machine and what else runs on it.
#
# * **LaRE vs DIRE-style**: DIRE inverts the image to noise with 20 DDIM steps and
#   reconstructs it with 20 more (40 UNet passes on B latents, plus a decode); LaRE makes one
#   UNet call on B·K latents. Both from pixels in memory, at the same batch.
# * **batched vs per-image**: the extraction driver (PNG files → DataLoader → batched LaRE →
#   feature store) against a loop like the released one (one image at a time, the prompt
#   re-embedded for every image), both from PNG files.
# * **extraction vs bare**: the driver against just `vae.encode` + one UNet forward on B·K
#   latents with tensors in memory: how much of the model's speed the pipeline keeps
#   (target ≥ 0.85: decoding, noise drawing and storage hidden behind compute).

# %%
with tempfile.TemporaryDirectory() as folder:
    timed = imagesets.subsample(sets["real"], budget.cost_images, SEED)
    records = nb01_cost.write_png_records(timed.pixels, timed.ids,
                                         [world.class_names[i] for i in timed.class_index], folder)
    cost = nb01_cost.compare_costs(
        reference, records, config, batch_size=budget.cost_batch, dire_steps=budget.dire_steps,
        dire_images=max(budget.cost_batch, budget.cost_images // 4),
        per_image_images=max(4, budget.cost_images // 4), repeats=budget.cost_repeats,
        num_workers=budget.num_workers, seed=SEED)
fig = nb01_figures.cost_figure(cost)
save_figure(fig, out_dir, "cost")
plt.show()
print(json.dumps({k: round(v, 2) for k, v in cost.ratios().items()}, indent=1))
cost.table().round(3)

# %% [markdown]
# The paper's claim is "8× faster than DIRE" (0.28 s against 2.3 s per image). Counting UNet
# passes predicts the ratio here: DIRE makes 40 passes per image, LaRE K = 4, so about 10×,
# more because DIRE also decodes and less where small batches leave the CPU idle.
#
# **Half precision** (bf16 against fp32) is measured only on a GPU: on a CPU the library
# refuses half types (slow kernels, and the released fp16 path crashes).

# %%
if torch.cuda.is_available():
    from lare2lib.signals.lare import precision_error

    gpu_reference = world_ldm(world, world.reference_ldm).to("cuda")
    probe = imagesets.subsample(sets["real"], 16, SEED)
    precision = precision_error(
        gpu_reference, set_maps.set_pixels(probe, config.image_size), probe.ids,
        set_maps.set_prompts(probe, world.class_names, gpu_reference.class_names), config,
        dtype=torch.bfloat16, seed=SEED)
    print(precision)
else:
    precision = None
    print("bf16 vs fp32 error: skipped (no GPU; half precision is GPU-only)")

# %% [markdown]
# ## 6 · Reading files: the release against the corrections
#
# The released LaRE reads a file with `Image.open(path).convert("RGB")`: the EXIF orientation is
# ignored and transparency dropped. This project's defaults do the same (so its maps match the
# release's), with `LareConfig(exif_orientation=True, alpha="composite")` as the corrections.
# The world's images never touch a file, so held-out reals are written as a user's files would
# be: stored sideways with EXIF orientation 6 (a phone photo), and as a PNG with a transparent
# border over black. The table gives each file's map change against the same image stored
# upright and opaque, at the same noise draws (0 = the same map; JPEG's own loss is in both rows).

# %%
from lare2lib.studies import nb01_decoding

probe = imagesets.subsample(sets["real"], 16, SEED)
probe_prompts = dict(zip(probe.ids, set_maps.set_prompts(probe, world.class_names, reference.class_names)))
with tempfile.TemporaryDirectory() as folder:
    decoding = nb01_decoding.decoding_table(reference, nb01_decoding.write_cases(probe, folder), probe_prompts,
                                            config, seed=SEED)
decoding.round(3)

# %% [markdown]
# ## 7 · Explorer (interactive only)
#
# Pick a set, an image, a timestep and K; the map is recomputed on the spot.

# %%
if INTERACTIVE:
    import ipywidgets as widgets

    def explore(set_name: str, index: int, timestep: int, k: int) -> None:
        explorer_config = dataclasses.replace(config, timestep=timestep, ensemble=k)
        nb01_figures.single_map_figure(reference, sets[set_name], index, world.class_names,
                                  explorer_config, seed=SEED)
        plt.show()

    widgets.interact(explore, set_name=list(sets), index=widgets.IntSlider(0, 0, 255),
                     timestep=widgets.IntSlider(budget.timestep, 20, 980, 20),
                     k=widgets.IntSlider(budget.ensemble, 1, 16))

# %% [markdown]
# ## 8 · Findings (composed from this run's numbers)

# %%
display(Markdown(nb01_figures.findings(auc, gap, study, cost.ratios(), budget.timestep)))

# %% [markdown]
# ## 9 · Headline numbers

# %%
metrics = nb01_lare.metrics_record(
    profile, budget, auc=auc, mean_lare=mean_lare, common=common, own=own, study=study,
    cost=cost, precision=precision, seconds=time.time() - started, file_decoding=decoding,
    reference=world.reference_ldm, own_generator=own_generator)
nb01_lare.write_metrics(out_dir, metrics)
print(json.dumps({key: metrics[key] for key in ("lare_auc", "lare_vs_dire_speedup",
                                                 "batched_vs_per_image_speedup",
                                                 "extraction_vs_bare_ratio", "seconds")},
                 indent=1, default=float))
