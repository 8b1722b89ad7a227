"""Run profiles: every knob of a run in one frozen, JSON-serialisable dataclass.

Three profiles share one code path:

``mini``  (default) the offline CPU world built by notebook 00 from photos that installed
          packages ship; reference models trained here and committed as safetensors.
``smoke`` the same world on a tiny budget (a handful of crops, tiny models): proves the code
          path in seconds, used by the tests and by ``SMOKE=True`` notebook runs.
``full``  the papers' setting on a GPU machine with the model hub: Stable Diffusion v1.5 for
          LaRE, the SD 2.1 VAE for reconstructions, GenImage as data.

The profile's hash (:meth:`Profile.config_hash`) keys every cache, so changing any field
invalidates exactly what depends on it. Notebooks receive primitives from papermill
(``PROFILE``, ``SMOKE``, ``SEED``, ...) and build the dataclass with :func:`get_profile`.

Model references are strings understood by :mod:`lare2lib.models.refs`: a local folder or file,
a hub id (``org/name``), a timm model name, or ``mini:<name>`` for the committed mini world.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "WorldConfig",
    "ModelsConfig",
    "LareConfig",
    "Profile",
    "PROFILE_NAMES",
    "get_profile",
    "ProfileError",
]


class ProfileError(ValueError):
    """An unknown profile name or field, with the valid choices in the message."""


@dataclass(frozen=True)
class WorldConfig:
    """The mini world: which photos, how they are cut, how much is generated."""

    recipe: str = "mini"
    """Training recipe for the reference models in :mod:`lare2lib.world.recipes` (``mini`` or ``smoke``)."""
    image_size: int = 64
    """Side of every world image (real crops, reconstructions, generated samples), in pixels."""
    photo_short_side: int = 384
    """Photos are first downscaled (antialiased) so their short side is this many pixels."""
    crop_min: int = 64
    """Smallest square crop taken from a downscaled photo before resizing to ``image_size``."""
    crop_max: int = 256
    """Largest square crop; the sizes in between make the crops multi-scale."""
    crops_per_photo_train: int = 160
    """Crops per training photo (the LDMs and autoencoders learn from these)."""
    crops_per_photo_heldout: int = 64
    """Crops per validation or test photo."""
    generated_per_generator: int = 512
    """Test images sampled from each generator (at least 500 in the full mini run)."""
    train_generator: str = "kl_ldm"
    """The generator whose samples detectors train on (GenImage's protocol: train on one, test on all)."""
    generated_train: int = 1536
    """Training images sampled from ``train_generator`` (its test images are sampled separately)."""
    generated_val: int = 256
    """Validation images sampled from ``train_generator`` (model selection, never the test set)."""
    ddim_steps: int = 25
    """DDIM sampling steps of the default generators."""
    guidance_scale: float = 2.0
    """Classifier-free guidance of the class-conditional UNets (1.0 disables it)."""
    max_photos: int = 0
    """Use at most this many photos (0 = all found); the smoke profile keeps it small."""


@dataclass(frozen=True)
class ModelsConfig:
    """Which weights each role uses. Strings are resolved by :mod:`lare2lib.models.refs`."""

    ldm: str = "mini:kl_ldm"
    """LaRE reference LDM (VAE + UNet + conditioning + scheduler)."""
    recon_autoencoder: str = "mini:kl_ae"
    """Autoencoder whose reconstructions train the reconstruction detector."""
    aeroblade_autoencoders: tuple[str, ...] = ("mini:kl_ae", "mini:vq_ae")
    """Autoencoders AEROBLADE takes the minimum distance over."""
    egre_backbone: str = "efficientnet_lite0"
    """Backbone under the EGRE head (feature map + global vector)."""
    recon_classifiers: tuple[str, ...] = ("efficientnet_lite0",)
    """timm classifiers trained on real vs reconstructed images."""


@dataclass(frozen=True)
class LareConfig:
    """LaRE extraction, defaults as the released code runs them (METHODS.md §1)."""

    timestep: int = 200
    """Diffusion timestep of the single noise prediction (older configs: 261, 280)."""
    ensemble: int = 4
    """Noise draws sharing one latent sample, averaged (older configs: 8)."""
    image_size: int = 64
    """The whole image is resized (squashed, bicubic) to this side before encoding."""
    prompt: str = "class"
    """``class`` → "a photo of a {class}"; ``photo`` → "a photo"; ``empty`` → ""."""
    article: str = "a"
    """``a``: "a photo of a {class}" for every class, as released (also "a photo of a apple");
    ``grammatical``: "an" before a vowel."""
    exif_orientation: bool = False
    """Apply the EXIF orientation before LaRE. The released LaRE reads the pixels as stored
    (``Image.open(...).convert("RGB")``); True is this project's correction."""
    alpha: str = "drop"
    """Transparency before LaRE: ``drop`` (the release: Pillow's ``convert("RGB")``) or
    ``composite`` (over white, this project's correction; :data:`lare2lib.data.images.ALPHA_POLICIES`)."""
    batch_size: int = 32
    """Images per batch; a map does not depend on it (noise is drawn per image)."""


@dataclass(frozen=True)
class Profile:
    """All settings of one run; frozen so its hash can key caches."""

    name: str = "mini"
    """Profile name: ``mini``, ``smoke`` or ``full``."""
    seed: int = 0
    """Root seed; every stochastic step derives its own generator from it."""
    smoke: bool = False
    """Tiny budgets everywhere (tests and ``SMOKE=True`` notebook runs)."""
    device: str = "auto"
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    dtype: str = "float32"
    """Inference precision; ``bfloat16``/``float16`` only on GPU, with its error reported."""
    data_root: str = ""
    """``full``: the GenImage root (``<subset>/{train,val}/{ai,nature}``); ``mini``: unused."""
    world: WorldConfig = field(default_factory=WorldConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    lare: LareConfig = field(default_factory=LareConfig)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        return _build(cls, data, path="")

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        return cls.from_dict(json.loads(text))

    def config_hash(self, length: int = 12) -> str:
        """Stable hash of every field (canonical JSON → sha256), for cache keys."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:length]

    def replace(self, **overrides: Any) -> "Profile":
        """A copy with fields replaced; nested fields by dotted name (``"lare.timestep"``)."""
        data = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return Profile.from_dict(data)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        where = f" in '{path}'" if path else ""
        raise ProfileError(
            f"unknown profile field(s) {unknown}{where}; valid fields: {sorted(valid)}"
        )
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls, name))
        if nested is not None and isinstance(value, dict):
            value = _build(nested, value, f"{path}{name}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    target = data
    for part in parts[:-1]:
        if part not in target or not isinstance(target[part], dict):
            raise ProfileError(f"unknown profile field '{key}'; valid sections: {_sections()}")
        target = target[part]
    if parts[-1] not in target:
        raise ProfileError(
            f"unknown profile field '{key}'; valid fields here: {sorted(target)}"
        )
    target[parts[-1]] = value


def _sections() -> list[str]:
    return sorted(name for (_, name) in _NESTED)


_NESTED: dict[tuple[type, str], type] = {
    (Profile, "world"): WorldConfig,
    (Profile, "models"): ModelsConfig,
    (Profile, "lare"): LareConfig,
}


def _mini() -> Profile:
    return Profile(name="mini")


def _smoke() -> Profile:
    return Profile(
        name="smoke",
        smoke=True,
        world=WorldConfig(
            recipe="smoke",
            image_size=32,
            photo_short_side=128,
            crop_min=32,
            crop_max=96,
            crops_per_photo_train=6,
            crops_per_photo_heldout=4,
            generated_per_generator=8,
            generated_train=16,
            generated_val=8,
            ddim_steps=4,
            max_photos=8,
        ),
        lare=LareConfig(image_size=32, batch_size=8),
    )


def _full() -> Profile:
    return Profile(
        name="full",
        device="auto",
        models=ModelsConfig(
            ldm="stable-diffusion-v1-5/stable-diffusion-v1-5",
            recon_autoencoder="stabilityai/stable-diffusion-2-1:vae",
            aeroblade_autoencoders=(
                "CompVis/stable-diffusion-v1-1:vae",
                "stabilityai/stable-diffusion-2-base:vae",
                "kandinsky-community/kandinsky-2-1:movq",
            ),
            egre_backbone="resnet50_clip.openai",
            recon_classifiers=(
                "convnext_large.fb_in22k_ft_in1k",
                "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k",
                "tf_efficientnetv2_b0.in1k",
            ),
        ),
        lare=LareConfig(image_size=256, batch_size=16),
    )


_FACTORIES = {"mini": _mini, "smoke": _smoke, "full": _full}
PROFILE_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_profile(name: str = "mini", *, smoke: bool = False, seed: int | None = None,
                **overrides: Any) -> Profile:
    """Build a named profile; ``smoke=True`` turns ``mini`` into ``smoke``.

    ``overrides`` take dotted names for nested fields, e.g.
    ``get_profile("mini", **{"lare.timestep": 261})``.
    """
    if name not in _FACTORIES:
        raise ProfileError(f"unknown profile '{name}'; valid profiles: {list(PROFILE_NAMES)}")
    if smoke and name == "mini":
        name = "smoke"
    profile = _FACTORIES[name]()
    if smoke and not profile.smoke:
        profile = profile.replace(smoke=True)
    if seed is not None:
        profile = profile.replace(seed=int(seed))
    if overrides:
        profile = profile.replace(**overrides)
    return profile
