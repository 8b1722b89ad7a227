"""Notebook 04's spectra: what each autoencoder leaves in an image, and what generated images carry.

:func:`residual_spectra` is the mean log-magnitude 2-D spectrum of ``recon - real`` per
autoencoder (decoders that upsample by ``f`` leave peaks on a grid of ``1/f`` cycles per pixel);
:func:`highpass_spectra` the same of images without a paired real (the image minus its Gaussian
blur); :func:`spectra_summary` the small numbers of ``metrics.json``; :func:`spectra` all of it
from a family source (:mod:`~lare2lib.studies.nb04_sources`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["luminance", "center_stack", "log_spectrum", "residual_spectra", "highpass", "highpass_spectra",
           "radial_profile", "residual_profiles", "grid_peak_db", "spectra_summary", "residual_rms", "spectra"]

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
