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
# # 07 · Figures and report: the project's headline results in one place
#
# **Question.** What did this run of the pipeline find, figure by figure, in the form a paper
# would show it: does LaRE's premise hold and what does it cost (01), what do EGRE's parts add
# (02), how well does a detector trained on autoencoder reconstructions find generated images,
# at the low false-positive rates that matter, and how robust is it (03), which autoencoder
# family and training resolution generalise (04, 05), how easily is it evaded (06), and what
# is left of it all on real generators' images (08)?
#
# **Method.** Nothing is recomputed here. Each figure is redrawn (by the module of its notebook,
# `lare2lib.studies.nb07_lare` … `nb07_evasion`, listed in `nb07_figures.FIGURES`) from
# the `metrics.json` the other notebooks of **this run** wrote (`Path(OUT_DIR).parent`: the
# mini run's `figures/`, or a smoke run's own folder). A figure whose notebook has not run is
# not drawn, and the reason is printed; the overview figure, which combines notebooks, leaves
# out the panel of each missing one and names it under the figure. Nothing is ever filled in.
# `lare2 run` runs this notebook last (`runner.RUNS_LAST`), after 08.
#
# After the last notebook, `lare2 run` assembles every executed notebook into one
# self-contained page, `index.html` beside these figures (`lare2lib.pipeline.report`; rebuild it alone
# with `python -m lare2lib.pipeline.report mini`).

# %% tags=["parameters"]
PROFILE: str = "mini"  # profile whose run is summarised: mini (default), smoke or full
SMOKE: bool = False  # tiny budgets (tests, CI): the upstream metrics are then the smoke run's
SEED: int = 0  # root seed (nothing here is random; kept for the runner's uniform interface)
OUT_DIR: str = ""  # where figures and metrics.json go (empty: figures/07_figures)
DATA_DIR: str = ""  # caches and the built world (unused here; kept for the uniform interface)
INTERACTIVE: bool = False  # no explorer in this notebook; kept for the uniform interface
FORMATS: str = "png,pdf"  # comma-separated figure formats (PNG for reading, PDF for papers)

# %%
import json
import os
import time
from pathlib import Path

if DATA_DIR:
    os.environ["LARE2_DATA_DIR"] = DATA_DIR

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lare2lib.core import paths
from lare2lib.core.plotting import set_theme, write_metrics
from lare2lib.core.profiles import get_profile
from lare2lib.studies import nb07_common, nb07_figures

started = time.time()
profile = get_profile(PROFILE, smoke=SMOKE, seed=SEED)
out_dir = Path(OUT_DIR) if OUT_DIR else paths.figures_dir("07_figures")
root = out_dir.parent  # the run's figures folder: one output folder per notebook
formats = tuple(f.strip() for f in FORMATS.split(",") if f.strip())
set_theme()
upstream = nb07_common.available_metrics(root, numbers=("01", "02", "03", "04", "05", "06", "08"))
records: dict[str, dict] = {}


def show(name: str) -> None:
    """Draw, save (before showing) and show one figure, or say why it is not drawn."""
    fig, records[name] = nb07_figures.render(name, upstream, out_dir, formats)
    if fig is None:
        print(f"[{name}] not drawn: {records[name]['skipped']}")
    else:
        print(f"[{name}] from {', '.join(records[name]['from'])}")
        plt.show()


print(f"profile={profile.name} smoke={profile.smoke} root={root}")
print("upstream notebooks with metrics.json:", list(upstream) or "none")

# %% [markdown]
# ## 1 · At a glance: AUC per generator, one panel per detector family
#
# The same held-out reals against each generator's test samples: the mean LaRE with no
# training (01, 95 % bootstrap interval), the EGRE head, the ablation variant with ESR and ECR
# (02, ±1 std over seeds), and the detector trained on real vs reconstructed images, one crop
# (03, 95 % bootstrap interval). 0.5 (dotted) is chance.

# %%
show("overview_auc")

# %% [markdown]
# ## 2 · LaRE's premise over t (the paper's Fig. 1b) and its cost
#
# Left: every set scored by the common reference LDM, as LaRE scores every image with SD v1.5;
# right: `vq_ldm`'s samples scored by their own LDM. The paper finds generated images'
# single-step loss below the reals' at every t, most clearly near t = 200 (dotted line). Then
# the cost: seconds per image of each variant timed in one process, and the ratios that matter
# (the paper reports 8× against DIRE).

# %%
show("loss_vs_timestep")

# %%
show("cost")

# %% [markdown]
# ## 3 · What EGRE's parts add (02)
#
# Each bar is the mean over seeds of a variant's test score against one generator (and their
# mean), with ±1 standard deviation: ACC at the fixed threshold 0.5 (the paper's "rawAcc"),
# AP and AUC. A difference smaller than the error bars is not resolved by this many seeds.

# %%
show("egre_ablation")

# %% [markdown]
# ## 4 · The reconstruction detector at low false-positive rates, and AEROBLADE (03)
#
# TPR at 0.1 % FPR (the largest TPR whose FPR on the reals is at most 0.1 %) and AUC per
# generator, for one crop and for the mean of 10 crops, with bootstrap intervals; AEROBLADE's
# AP, which needs no training. Then the same detector's AUC under post-processing of the test
# images (both classes alike).

# %%
show("reconstruction_tpr")

# %%
show("robustness")

# %% [markdown]
# ## 5 · Autoencoder family and training resolution (04, 05)
#
# Train-autoencoder × test-set and train-resolution × test-resolution matrices of AUC and
# TPR @ 0.1 % FPR, and the spectra of the reconstruction residuals that may explain them.

# %%
show("autoencoder_family")

# %%
show("residual_spectra")

# %%
show("training_resolution")

# %% [markdown]
# ## 6 · Evasion (06)
#
# Post-processing sweeps for every detector, the artifact-removal attack, and PGD budget curves
# beside the PSNR the attack costs the image.

# %%
show("postprocessing")

# %%
show("evasion")

# %% [markdown]
# ## 7 · In the wild (08)
#
# Every detector of 02–05 and the training-free ones on real generators' images (ComfyUI's
# template previews) against held-out photos: AUC with photo-grouped 95 % intervals, with both
# classes processed identically (filled) and as their files come (open): the gap between the
# two is how much a format/size shortcut would have flattered them.

# %%
show("in_the_wild")

# %% [markdown]
# ## 8 · The answers as they fell in this run
#
# One sentence per headline result, its numbers read from the upstream `metrics.json` (so they
# change with the run), then the table they come from.

# %%
answers = nb07_figures.findings(upstream)
display(Markdown("\n".join(f"- {line}" for line in answers) or "_No upstream results yet._"))
headline = pd.DataFrame(nb07_figures.headline_rows(upstream))
headline.round(3) if len(headline) else "no headline numbers: no upstream notebook has run"

# %% [markdown]
# **Limits.** These are the mini world's numbers: 64 px crops of a few dozen photos, small
# LDMs trained here on a CPU, a few hundred test images per generator. The intervals are wide
# at low FPR (a TPR at 0.1 % FPR rests on the top 0.1 % of a few hundred reals, i.e. on the one
# or two highest-scoring ones), and two of the three generators (`kl_ldm`, `kl_ldm_fast`) share
# their weights with LaRE's reference model, which may make them easier to detect than an
# unrelated generator would be. At scale
# (the `full` profile: Stable Diffusion, GenImage's eight generators, 224–512 px images,
# thousands of test images) the absolute numbers will differ, the intervals will shrink, and
# only the comparisons made within one run here (variant against variant, 1 try against 10,
# LaRE against DIRE on the same machine) are expected to carry over. A smoke run
# (`SMOKE=True`) only proves the code path: its numbers mean nothing.

# %%
metrics = {
    "profile": profile.name,
    "smoke": profile.smoke,
    "upstream": sorted(upstream),
    "figures": {name: r for name, r in records.items() if "skipped" not in r},
    "skipped": {name: r["skipped"] for name, r in records.items() if "skipped" in r},
    "findings": answers,
    "headline": headline.to_dict(orient="records"),
    "seconds": time.time() - started,
}
write_metrics(out_dir, metrics, notebook="07_figures")
print(json.dumps({k: metrics[k] for k in ("upstream", "figures", "skipped")}, indent=1))
