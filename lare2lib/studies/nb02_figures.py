"""What notebook 02 draws and says about EGRE: the ablation figure, ESR's attention and ECR's
gate on real and generated crops, and the findings of a run as sentences built from its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lare2lib.detectors.egre_data import EgreDataset
from lare2lib.studies.nb02_egre import ABLATION_LABELS

__all__ = ["COMPARISONS", "ablation_figure", "attention_examples", "attention_figure", "bias_effect",
           "gate_figure", "findings", "shuffle_findings"]


def ablation_figure(summary: Mapping[str, Any], metrics: Sequence[str] = ("acc", "ap", "auc")):
    """One panel per metric: each ablation row's mean ± std over seeds, per test set (markers)
    and their mean (bar)."""
    import matplotlib.pyplot as plt

    from lare2lib.core.plotting import colour_of

    names = list(summary)
    tests = [t for t in next(iter(summary.values())) if t != "mean"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(names) + 1.6),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means = [summary[n]["mean"][metric]["mean"] for n in names]
        stds = [summary[n]["mean"][metric]["std"] for n in names]
        ax.barh(range(len(names)), means, xerr=stds, color="0.85", edgecolor="0.5", capsize=3,
                label="mean over test sets")
        for k, test in enumerate(tests):
            offset = (k - (len(tests) - 1) / 2) * 0.18
            values = [summary[n][test][metric] for n in names]
            ax.errorbar([v["mean"] for v in values], np.arange(len(names)) + offset,
                        xerr=[v["std"] for v in values], fmt="o", ms=4, capsize=2,
                        color=colour_of(test), label=test)
        ax.axvline(0.5, color="grey", lw=1, ls=":")
        lowest = min(min(summary[n][t][metric]["mean"] for t in [*tests, "mean"]) for n in names)
        ax.set(xlim=(min(0.3, lowest - 0.05), 1.02), xlabel=f"{metric.upper()} (mean ± std over seeds)")
        ax.set_yticks(range(len(names)), [ABLATION_LABELS.get(n, n) for n in names])
    axes[0, 0].invert_yaxis()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@torch.inference_mode()
def attention_examples(model, dataset: EgreDataset, indices: Sequence[int]) -> dict[str, Any]:
    """What ESR and ECR do on some items: crops, map windows, attention with and without the
    LaRE bias, the bias itself and the channel gate; arrays over the token grid.

    Keys: ``crops`` uint8 (n, 3, c, c); ``maps`` (n, Cm, h, w); ``attention`` and
    ``attention_unbiased`` (n, heads, H, W) (spatial tokens; ``mean_token`` (n, heads) is the
    weight left on the mean token); ``bias`` (n, heads, H, W); ``gate`` (n, C) when the model
    has ECR; ``p_fake`` (n,); ``labels`` (n,).
    """
    from torch.utils.data import default_collate

    batch = default_collate([dataset[i] for i in indices])
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    model.eval()
    out = {"crops": torch.stack([dataset.crop_image(i) for i in indices]),
           "maps": batch["lare"].cpu(), "labels": batch["label"].cpu(),
           "p_fake": model(batch).softmax(dim=1)[:, 1].cpu()}
    if model.esr is None and model.ecr is None:
        return out
    feature_map, _ = model.backbone_features(batch)
    if model.esr is not None:
        grid = model.esr.grid
        _, weights = model.esr(feature_map, batch["lare"])
        _, unbiased = model.esr(feature_map, torch.zeros_like(batch["lare"]))
        spatial = lambda w: w[:, :, 1:].reshape(w.shape[0], w.shape[1], *grid).cpu()  # noqa: E731
        out.update(attention=spatial(weights), attention_unbiased=spatial(unbiased),
                   mean_token=weights[:, :, 0].cpu(),
                   bias=spatial(model.esr.attention_bias(batch["lare"])))
    if model.ecr is not None:
        out["gate"] = model.ecr.gate(batch["lare"]).cpu()
    return out


def _grid_panel(ax, crop: torch.Tensor, values: torch.Tensor, title: str, *, cmap: str,
                vmin: float, vmax: float, fmt: str, alpha: float = 0.55) -> None:
    """Token-grid ``values`` over the crop (nearest upsampling), each cell's value printed."""
    from torch.nn import functional as F

    side = crop.shape[-1]
    upsampled = F.interpolate(values[None, None].float(), size=(side, side), mode="nearest")[0, 0]
    ax.imshow(crop.permute(1, 2, 0).numpy())
    ax.imshow(upsampled.numpy(), cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    height, width = values.shape
    for r in range(height):
        for c in range(width):
            ax.text((c + 0.5) * side / width, (r + 0.5) * side / height, format(float(values[r, c]), fmt),
                    ha="center", va="center", fontsize=6, color="white")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def attention_figure(examples: Mapping[str, Mapping[str, Any]], per_set: int = 2):
    """Rows: ``per_set`` items of each named example set (e.g. real, generated). Columns: the
    crop and P(fake); the map window (channel mean); ESR's bias per token (mean over heads,
    centred: a constant shift does not change a softmax); the attention over the token grid
    (mean over heads); and what the bias changed in it (with − without, percentage points).
    Colour scales are shared by all rows, so a pale panel is a small effect."""
    import matplotlib.pyplot as plt

    from lare2lib.core.plotting import show_map

    rows = [(name, k) for name, ex in examples.items() for k in range(min(per_set, len(ex["crops"])))]
    shown = lambda key, f=lambda x: x: torch.cat(  # noqa: E731
        [f(ex[key][:per_set]).flatten() for ex in examples.values()])
    attention_max = float(shown("attention", lambda a: a.mean(1)).max())
    centred = {name: ex["bias"].mean(1) - ex["bias"].mean(1).mean(dim=(1, 2), keepdim=True)
               for name, ex in examples.items()}
    bias_max = float(torch.cat([b[:per_set].flatten() for b in centred.values()]).abs().max()) or 1.0
    change = {name: 100 * (ex["attention"] - ex["attention_unbiased"]).mean(1) for name, ex in examples.items()}
    change_max = float(torch.cat([c[:per_set].flatten() for c in change.values()]).abs().max()) or 1.0
    map_max = float(shown("maps", lambda m: m.mean(1)).quantile(0.99))
    fig, axes = plt.subplots(len(rows), 5, figsize=(10.5, 2.1 * len(rows)), squeeze=False)
    for row, (name, k) in enumerate(rows):
        ex = examples[name]
        axes[row, 0].imshow(ex["crops"][k].permute(1, 2, 0).numpy())
        axes[row, 0].set_title(f"{name} #{k}: P(fake) {float(ex['p_fake'][k]):.2f}", fontsize=8)
        axes[row, 0].axis("off")
        show_map(axes[row, 1], ex["maps"][k].mean(0), map_max, "LaRE window (mean)")
        _grid_panel(axes[row, 2], ex["crops"][k], centred[name][k], "ESR bias, centred",
                    cmap="coolwarm", vmin=-bias_max, vmax=bias_max, fmt="+.3f", alpha=0.8)
        _grid_panel(axes[row, 3], ex["crops"][k], ex["attention"][k].mean(0),
                    f"attention (mean token {float(ex['mean_token'][k].mean()):.2f})",
                    cmap="viridis", vmin=0, vmax=attention_max, fmt=".2f")
        _grid_panel(axes[row, 4], ex["crops"][k], change[name][k], "change from the bias (pp)",
                    cmap="coolwarm", vmin=-change_max, vmax=change_max, fmt="+.1f", alpha=0.8)
    fig.tight_layout()
    return fig


def gate_figure(gates: Mapping[str, torch.Tensor]):
    """ECR's gate per channel: mean over images of each set (channels sorted by the first set's
    mean), and the distribution of every gate value per set."""
    import matplotlib.pyplot as plt

    from lare2lib.core.plotting import colour_of

    first = next(iter(gates.values()))
    order = torch.argsort(first.mean(0), descending=True)
    fig, (ax_channels, ax_hist) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    for name, gate in gates.items():
        ax_channels.plot(gate.mean(0)[order].numpy(), label=f"{name} (n={len(gate)})", color=colour_of(name), lw=1.2)
        ax_hist.hist(gate.flatten().numpy(), bins=40, range=(0, 1), histtype="step", density=True,
                     color=colour_of(name), label=name)
    ax_channels.set(xlabel="feature channel (sorted by the first set's mean gate)", ylabel="mean gate w",
                    title="ECR channel gate, mean over images")
    ax_hist.set(xlabel="gate value", ylabel="density", title="all gate values")
    ax_channels.legend(fontsize=8)
    fig.tight_layout()
    return fig


COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("esr", "backbone", "what ESR adds to the backbone"),
    ("ecr", "backbone", "what ECR adds to the backbone"),
    ("egre", "backbone", "what ESR + ECR add together"),
    ("egre", "lare_cnn", "EGRE against the map alone"),
    ("egre", "egre_dire", "LaRE maps against DIRE-style maps"),
    ("egre", "egre_misaligned", "aligned against the released misaligned map"),
)
"""Pairs of ablation rows the findings compare: (row, reference row, what the difference means)."""


def bias_effect(examples: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per example set: how much ESR's LaRE bias moves the attention. ``bias_spread``: mean over
    items of the max − min bias over tokens (mean of heads); ``max_change_pp`` / ``mean_change_pp``:
    the largest and the mean absolute change of a token's weight (percentage points)."""
    out = {}
    for name, ex in examples.items():
        bias = ex["bias"].mean(1).flatten(1)
        change = 100 * (ex["attention"] - ex["attention_unbiased"]).abs()
        out[name] = {"bias_spread": float((bias.amax(1) - bias.amin(1)).mean()),
                     "max_change_pp": float(change.max()), "mean_change_pp": float(change.mean())}
    return out


def _cell(summary: Mapping[str, Any], row: str, test: str, metric: str) -> tuple[float, float]:
    value = summary[row][test][metric]
    return float(value["mean"]), float(value["std"])


def findings(summary: Mapping[str, Any], metrics: Sequence[str] = ("auc", "acc")) -> str:
    """Markdown bullets stating this run's results from ``summary`` (no number is typed in).

    A difference counts as "within the seed spread" when it is smaller than the two rows'
    standard deviations combined (√(s₁² + s₂²)); with 3 seeds that is a rough guide only.
    """
    rows = [r for r in summary if "mean" in summary[r]]
    tests = [t for t in summary[rows[0]] if t != "mean"]
    label = lambda r: ABLATION_LABELS.get(r, r)  # noqa: E731
    lines = []
    for metric in metrics:
        name = metric.upper()
        best = max(rows, key=lambda r: _cell(summary, r, "mean", metric)[0])
        mean, std = _cell(summary, best, "mean", metric)
        lines.append(f"- Highest mean {name} over the test sets: **{label(best)}**, {mean:.4f} ± "
                     f"{std:.4f} (std over seeds).")
        if "backbone" in summary and _cell(summary, "backbone", "mean", metric)[0] >= 0.98:
            lines.append(f"- The backbone alone already reaches {name} "
                         f"{_cell(summary, 'backbone', 'mean', metric)[0]:.4f}: the frozen features "
                         "separate this world's generated crops almost perfectly, so any guidance "
                         "has little room to show.")
        for row, reference, meaning in COMPARISONS:
            if row not in summary or reference not in summary:
                continue
            (m1, s1), (m2, s2) = (_cell(summary, row, "mean", metric),
                                  _cell(summary, reference, "mean", metric))
            delta, spread = m1 - m2, float(np.hypot(s1, s2))
            verdict = ("within the seed spread" if abs(delta) <= spread
                       else "higher" if delta > 0 else "lower")
            lines.append(f"- {name}, {meaning}: {label(row)} {m1:.4f} vs {label(reference)} "
                         f"{m2:.4f}, Δ = {delta:+.4f} ({verdict}; combined spread {spread:.4f}).")
        if "egre" in summary:
            per_test = ", ".join(f"{t} {_cell(summary, 'egre', t, metric)[0]:.4f}" for t in tests)
            lines.append(f"- EGRE's {name} per test set: {per_test}.")
    return "\n".join(lines)


def shuffle_findings(shuffle: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = ("acc", "auc")) -> str:
    """Markdown bullets: each map-guided row with intact and shuffled maps (mean over seeds)."""
    lines = []
    for row, entry in shuffle.items():
        parts = []
        for metric in metrics:
            intact, shuffled = entry["intact"][metric]["mean"], entry["shuffled"][metric]["mean"]
            parts.append(f"{metric.upper()} {intact:.4f} → {shuffled:.4f} (Δ {shuffled - intact:+.4f})")
        lines.append(f"- {ABLATION_LABELS.get(row, row)}, intact → shuffled maps: " + "; ".join(parts) + ".")
    return "\n".join(lines)
