"""The extraction driver and the ``lare2 extract`` command: images in, one feature map per image
stored.

:func:`extract_to_store` drives any :class:`lare2lib.signals.lare.Extractor` (LaRE, or the DIRE-style
baseline of :mod:`lare2lib.signals.dire`) over a list of records: images are decoded and squashed by a
DataLoader while the model computes, ids already in the store are skipped (a killed run resumes
where it stopped), and every image that cannot be used is named in the store's report and in the
closing :class:`ExtractionSummary`, never given a placeholder map.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.signals.lare import (
    PROMPT_POLICIES,
    Extractor,
    LareExtractor,
    check_prompts_by_label,
    pixels_from_image,
    prompt_for,
)

__all__ = [
    "ExtractionSummary",
    "make_extractor",
    "extraction_config",
    "extract_to_store",
    "add_extract_arguments",
    "extract_command",
    "class_name_function",
    "distributed_state",
]


@dataclass
class ExtractionSummary:
    """How an extraction run went."""

    done: int = 0
    """Images whose feature was computed and stored in this run."""
    skipped_finished: int = 0
    """Images already in the store (a resumed run does not recompute them)."""
    bad: dict[str, str] = field(default_factory=dict)
    """Unreadable images → reason; they get no feature and are listed in the store report."""
    seconds: float = 0.0
    """Wall time of this run, loading included."""

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"extracted {self.done} image(s) in {self.seconds:.1f} s "
                 f"({self.images_per_second:.2f} images/s); {self.skipped_finished} already "
                 f"in the store; {len(self.bad)} bad"]
        lines += [f"  bad: {image_id}: {reason}" for image_id, reason in sorted(self.bad.items())]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Item:
    image_id: str
    source: str | Callable[[], Any]
    """A file path, or a function returning a PIL image (in-memory sets; num_workers=0)."""
    class_name: str | None
    label: int | None = None
    """0 real, 1 generated, None unknown: only used to refuse prompts that differ by label."""


def _as_item(record) -> _Item:
    if isinstance(record, (tuple, list)):
        source = record[1] if callable(record[1]) else str(record[1])
        return _Item(str(record[0]), source, record[2] if len(record) > 2 else None)
    return _Item(record.image_id, str(record.path), getattr(record, "class_name", None),
                 getattr(record, "label", None))


def _load_rgb(source: str | Callable[[], Any], decode: dict | None = None):
    """8-bit RGB PIL image: :func:`lare2lib.data.images.load_image` converts grey, palette, CMYK,
    16-bit, alpha and animated files (``decode``: its ``exif`` and ``alpha`` options) and raises
    ``BadImageError`` for the rest."""
    if callable(source):
        return source().convert("RGB")
    from lare2lib.data.images import load_image

    return load_image(source, **(decode or {}))


class _PixelDataset(torch.utils.data.Dataset):
    """Decodes and squashes images in DataLoader workers; failures become reasons, not crashes."""

    def __init__(self, items: Sequence[_Item], image_size: int, resize: str = "squash",
                 decode: dict | None = None):
        self.items = list(items)
        self.image_size = image_size
        self.resize = resize
        self.decode = decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            image = _load_rgb(self.items[index].source, self.decode)
            return index, pixels_from_image(image, self.image_size, self.resize)
        except Exception as error:  # any decoder failure is a reportable bad image
            return index, _failure_reason(error)


def _failure_reason(error: Exception) -> str:
    """``"<reason code>: <detail>"`` for :class:`lare2lib.data.images.BadImageError`, else the
    exception type and message."""
    if hasattr(error, "reason") and hasattr(error, "message"):
        return f"{error.reason}: {error.message}"
    return f"{type(error).__name__}: {error}"


def _collate(batch):
    good = [(index, pixels) for index, pixels in batch if isinstance(pixels, torch.Tensor)]
    bad = [(index, reason) for index, reason in batch if isinstance(reason, str)]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [index for index, _ in good], pixels, bad


def make_extractor(method: str, components, config: LareConfig = LareConfig(), *, seed: int = 0,
                   **options) -> Extractor:
    """``"lare"`` → :class:`LareExtractor`; ``"dire"`` → :class:`lare2lib.signals.dire.DireExtractor`."""
    if method == "lare":
        return LareExtractor(components, config, seed=seed, **options)
    if method == "dire":
        from lare2lib.signals.dire import DireExtractor

        return DireExtractor(components, config, seed=seed, **options)
    raise ValueError(f"unknown extraction method {method!r}; valid: ['lare', 'dire']")


def extraction_config(extractor: Extractor, model: str, prompt_policy: str) -> dict[str, Any]:
    """What a store's features depend on (batch size, device and workers do not)."""
    return {**extractor.config_dict(), "model": model, "prompt": prompt_policy,
            "article": getattr(extractor, "article", "a")}


def extract_to_store(method: str | Extractor, components, records, store,
                     config: LareConfig = LareConfig(), seed: int = 0,
                     batch_size: int | None = None, device: str | None = None,
                     num_workers: int = 0, *,
                     prompt: str | None = None, bad: dict[str, str] | None = None,
                     progress: bool = True, flush_every_seconds: float = 60.0,
                     partition: tuple[int, int] | None = None) -> ExtractionSummary:
    """Extract features for ``records`` into ``store``, skipping ids already there.

    ``records`` are ``ImageRecord``-like objects (``image_id``, ``path``, ``class_name``) or
    ``(image_id, path[, class_name])`` tuples. Images are decoded by a DataLoader
    (``num_workers`` processes) while the model computes; a failed decode is recorded in the
    store report and gets no feature; ``bad`` adds failures found earlier (e.g. files whose
    header :func:`lare2lib.data.manifests.scan_folder` could not read). ``device`` is only checked
    against the components (they are moved by their loader). Buffered rows are written as a
    (possibly short) shard at least every ``flush_every_seconds``, so a run killed at any moment
    loses at most that much work however large the store's shards are; the rest is flushed
    before returning.

    ``partition=(index, count)`` extracts only records ``index, index + count, ...``: process
    ``index`` of a ``count``-process run, writing to its own store writer
    (:func:`lare2lib.data.store.writer_name`). Every process must pass the same records in the same
    order (folder scans and manifests are sorted by id); maps are seeded per image id, so the
    union equals a single-process run.
    """
    started = time.perf_counter()
    extractor = method if not isinstance(method, str) else make_extractor(
        method, components, config, seed=seed)
    if device is not None and torch.device(device).type != extractor.device.type:
        raise ValueError(f"components are on {extractor.device}, extraction asked for {device}")
    policy = prompt or config.prompt
    known_classes = tuple(getattr(components, "class_names", ()) or ())
    items = [_as_item(record) for record in records]
    prompt_of = {item.image_id: prompt_for(policy, item.class_name, known_classes, config.article)
                 for item in items}  # built once: checked here, read per batch below
    check_prompts_by_label([prompt_of[item.image_id] for item in items], [item.label for item in items])
    from lare2lib.data.store import manifest_hash

    manifest = manifest_hash(item.image_id for item in items)  # the whole run's inputs
    if partition is not None:
        index, count = partition
        if not 0 <= index < count:
            raise ValueError(f"partition {partition}: need 0 <= index < count")
        items = items[index::count]
    todo = store.missing([item.image_id for item in items])
    todo_set = set(todo)
    pending = [item for item in items if item.image_id in todo_set]
    summary = ExtractionSummary(skipped_finished=len(items) - len(pending))
    for image_id, reason in (bad or {}).items():
        store.mark_bad(image_id, reason)
        summary.bad[image_id] = reason
    loader = torch.utils.data.DataLoader(
        _PixelDataset(pending, extractor.image_size, getattr(extractor, "resize", "squash"),
                      getattr(extractor, "file_decoding", None)), batch_size=batch_size or config.batch_size,
        num_workers=num_workers, collate_fn=_collate, pin_memory=extractor.device.type == "cuda")
    from tqdm.auto import tqdm

    last_flush = time.perf_counter()
    with tqdm(total=len(pending), desc=f"{extractor.method} features", unit="img",
              disable=not progress) as bar:
        for indices, pixels, bad in loader:
            for index, reason in bad:
                store.mark_bad(pending[index].image_id, reason)
                summary.bad[pending[index].image_id] = reason
            if indices:
                batch = [pending[i] for i in indices]
                ids = [item.image_id for item in batch]
                prompts = [prompt_of[image_id] for image_id in ids]
                store.append(ids, extractor(pixels, ids, prompts).cpu(), manifest=manifest)
                summary.done += len(batch)
            bar.update(len(indices) + len(bad))
            if time.perf_counter() - last_flush >= flush_every_seconds:
                store.flush()  # durable checkpoint: a kill now loses nothing finished
                last_flush = time.perf_counter()
    store.flush()
    summary.seconds = time.perf_counter() - started
    return summary


# -- command line -------------------------------------------------------------------------
def add_extract_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``lare2 extract``; unset ones default to the profile's values."""
    parser.add_argument("--method", choices=("lare", "dire"), default="lare",
                        help="LaRE (1 UNet pass per draw) or the DIRE-style baseline (2×20 passes)")
    parser.add_argument("--images", required=True,
                        help="an image folder (scanned recursively) or a manifest file")
    parser.add_argument("--root", help="data root a manifest's paths are relative to and must "
                                       "stay inside (default: the manifest's folder)")
    parser.add_argument("--out", required=True, help="feature store folder (resumed if present)")
    parser.add_argument("--profile", default="mini", help="profile for the defaults (mini|smoke|full)")
    parser.add_argument("--model", help="LDM reference (default: the profile's models.ldm)")
    parser.add_argument("--t", type=int, dest="timestep", help="LaRE timestep (default 200)")
    parser.add_argument("--ensemble", type=int, help="noise draws per image (default 4)")
    parser.add_argument("--batch-size", type=int, help="images per batch")
    parser.add_argument("--seed", type=int, help="root seed (default: the profile's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the profile's)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                        help="inference precision (half types on GPU only)")
    parser.add_argument("--prompt", choices=PROMPT_POLICIES, help="prompt policy (default class)")
    parser.add_argument("--class-from", choices=("none", "imagenet"), default="none",
                        help="class names of a scanned folder: none, or ImageNet ids in file "
                             "names (GenImage); a manifest's class_name column always counts")
    parser.add_argument("--val-classes", help="class of each ILSVRC2012_val_* file: the release's "
                                              "anns/filename_to_folder.json or LOC_val_solution.csv")
    parser.add_argument("--store-dtype", choices=("float32", "float16"), default="float32",
                        help="on-disk precision of the maps")
    parser.add_argument("--num-workers", type=int, default=2, help="image decoding processes")
    parser.add_argument("--dire-steps", type=int, default=20,
                        help="DDIM inversion steps = reconstruction steps (DIRE only)")
    parser.add_argument("--dire-space", choices=("pixel", "latent"), default="pixel",
                        help="where the DIRE error |x - x̂| is taken")
    parser.add_argument("--dire-resize", choices=("center_crop", "squash"), default="center_crop",
                        help="DIRE input: short side + centre crop (released DIRE) or squashed (as LaRE)")
    parser.add_argument("--dire-timing", choices=("guided_diffusion", "diffusers"), default="guided_diffusion",
                        help="DIRE's DDIM step alignment: guided_diffusion (the release's ddim_reverse_sample "
                             "loop) or diffusers (DDIMInverseScheduler, one step later)")
    return parser



def class_name_function(class_from: str = "none", val_classes: str | None = None):
    """File name → class name for ``--class-from``: None for ``"none"``; for ``"imagenet"``,
    the ImageNet class a GenImage file name encodes, else the one ``val_classes`` (a mapping
    file, :func:`lare2lib.data.imagenet.load_val_classes`) gives it, else None."""
    if class_from == "none":
        if val_classes:
            raise ValueError("--val-classes needs --class-from imagenet")
        return None
    if class_from == "imagenet":
        from lare2lib.data.imagenet import class_name_from_filename, load_val_classes

        mapping = load_val_classes(val_classes) if val_classes else None
        return lambda name: class_name_from_filename(name, val_classes=mapping)
    raise ValueError(f"class_from must be 'none' or 'imagenet', got {class_from!r}")


def read_records(images: str, class_from: str = "none", root: str | None = None,
                 val_classes: str | None = None) -> tuple[list, dict[str, str]]:
    """Records of a folder or manifest, and ``{image_id: reason}`` of files a folder scan
    could not even open (they are reported like images that fail to decode). A manifest that
    names a path outside its data root raises :class:`lare2lib.data.manifests.ManifestError`."""
    from lare2lib.data.images import DecodeReport
    from lare2lib.data.manifests import read_manifest, scan_folder

    source = Path(images)
    if source.is_file():
        return read_manifest(source, root=root), {}
    if not source.is_dir():
        raise FileNotFoundError(f"--images {images!r} is neither a folder nor a manifest file")
    class_name_fn = class_name_function(class_from, val_classes)
    report = DecodeReport()
    records = scan_folder(source, report=report, class_name_fn=class_name_fn)
    bad = {failure.image_id or failure.path: f"{failure.reason}: {failure.message}"
           for failure in report.failures}
    return records, bad


def distributed_state(device: torch.device):
    """accelerate's ``PartialState`` when this process was started by a distributed launcher
    (``accelerate launch --multi_gpu``, ``torchrun``: ``WORLD_SIZE`` > 1), else None.

    On CPU the state is built with ``cpu=True`` (gloo): without it accelerate falls back to
    a single process even under a launcher, and every process would extract everything.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")


def extract_command(args: argparse.Namespace) -> int:
    """``lare2 extract``: build the extractor and store from ``args``, run, print a summary.

    An impossible device/precision pair (half precision on CPU) or a manifest that escapes
    its data root ends with one line and exit code 2, before any model is loaded. Under a
    distributed launcher each process extracts every n-th image with its own store writer;
    the main process then prints what the whole store holds.
    """
    from lare2lib.core.profiles import get_profile
    from lare2lib.data.manifests import ManifestError
    from lare2lib.data.store import FeatureStore, writer_name
    from lare2lib.models.devices import resolve_device, resolve_dtype
    from lare2lib.models.ldm import load_ldm
    from lare2lib.core.exit_codes import USAGE_ERROR

    profile = get_profile(args.profile, seed=args.seed)
    overrides = {"timestep": args.timestep, "ensemble": args.ensemble,
                 "batch_size": args.batch_size, "prompt": args.prompt}
    config = dataclasses.replace(profile.lare, **{k: v for k, v in overrides.items()
                                                  if v is not None})
    model = args.model or profile.models.ldm
    device = resolve_device(args.device or profile.device)
    try:
        dtype = resolve_dtype(args.dtype or profile.dtype, device)
        records, unreadable = read_records(args.images, args.class_from, args.root,
                                           getattr(args, "val_classes", None))
    except (ValueError, FileNotFoundError) as error:  # ManifestError is a ValueError
        kind = "manifest" if isinstance(error, ManifestError) else "error"
        print(f"lare2 extract: {kind}: {error}", file=sys.stderr)
        return USAGE_ERROR
    state = distributed_state(device)
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
    if state is not None:
        device = state.device  # cuda:<local rank> on GPUs
    tag = f"[process {rank}/{world}] " if world > 1 else ""
    components = load_ldm(model, device=device, dtype=dtype)
    options = ({"steps": args.dire_steps, "space": args.dire_space,
                "resize": getattr(args, "dire_resize", "center_crop"),
                "timing": getattr(args, "dire_timing", "guided_diffusion")}
               if args.method == "dire" else {})
    extractor = make_extractor(args.method, components, config, seed=profile.seed, **options)
    store = FeatureStore(args.out, extraction_config(extractor, model, config.prompt),
                         dtype=args.store_dtype, writer=writer_name(rank))
    print(f"{tag}{args.method} on {len(records)} image(s) with {model} (seed {profile.seed}, "
          f"device {device}) → {args.out}")
    summary = extract_to_store(extractor, components, records, store, config,
                               seed=profile.seed, batch_size=config.batch_size,
                               num_workers=args.num_workers,
                               bad=unreadable if rank == 0 else None,
                               partition=(rank, world) if world > 1 else None)
    store.close()
    print(f"{tag}{summary}")
    if state is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            whole = FeatureStore.open_read_only(args.out)
            print(f"store {args.out}: {len(whole)} map(s) from {world} processes, "
                  f"{len(whole.report['bad'])} bad")
    return 0
