"""``lare2 predict`` and ``lare2 evaluate``: any detector checkpoint on any images.

Both go through :meth:`score_images` of the detector a checkpoint describes (see
:mod:`lare2lib.detectors.registry`), or of a training-free detector named instead of a
checkpoint (``--detector aeroblade`` / ``mean-lare``, :mod:`lare2lib.detectors.training_free`),
so they work the same for every kind.

``predict`` scores files, folders (scanned recursively) and manifests and writes one CSV row per
input: ``image_id, path, score, label, status``. A file that cannot be decoded (corrupt,
truncated, empty, not an image, over the pixel limit, ...) gets ``status = bad: <reason>`` and
no score, never a made-up one; the run goes on and the summary names it.

``evaluate`` scores the mini world's test sets (held-out reals against every generator and every
held-out reconstruction set) or folders given on the command line (``--real DIR --fake NAME=DIR``)
and writes the metrics of :func:`lare2lib.eval.metrics.real_vs_sets` with bootstrap intervals as JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ScoredImage",
    "collect_images",
    "score_records",
    "write_scores_csv",
    "add_predict_arguments",
    "predict_command",
    "add_evaluate_arguments",
    "evaluate_command",
    "evaluate_sets",
]

CSV_COLUMNS = ("image_id", "path", "score", "label", "status")


@dataclass
class ScoredImage:
    image_id: str
    path: str
    score: float | None = None
    """P(fake); None when the image could not be decoded."""
    status: str = "ok"
    """``ok``, or ``bad: <reason>: <detail>``."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def collect_images(inputs: Sequence[str], class_from: str = "none") -> tuple[list, dict[str, str]]:
    """Records of image files, folders and manifests, and ``{id: reason}`` of unopenable files.

    A folder is scanned recursively (ids relative to it, prefixed with the folder's name when
    several inputs are given so ids stay unique); a ``.csv``/``.parquet``/``.jsonl`` file is a
    manifest; any other file is one image (its id is the path as given). ``class_from``
    ``"imagenet"`` reads each file's ImageNet class from its name (GenImage); a manifest's
    ``class_name`` column always counts. Detectors with a class prompt (EGRE) use them.
    """
    from lare2lib.data.manifests import ImageRecord
    from lare2lib.signals.extract import read_records, class_name_function

    class_of = class_name_function(class_from)
    records: list = []
    bad: dict[str, str] = {}
    for raw in inputs:
        path = Path(raw)
        if path.is_dir() or path.suffix.lower() in (".csv", ".parquet", ".jsonl"):
            found, unreadable = read_records(raw, class_from)
            prefix = f"{path.name}/" if len(inputs) > 1 and path.is_dir() else ""
            records += [_prefixed(r, prefix) for r in found]
            bad.update({f"{prefix}{k}": v for k, v in unreadable.items()})
        elif path.exists() or path.is_symlink():
            records.append(ImageRecord(image_id=raw, path=path.absolute(),
                                       class_name=class_of(path.name) if class_of else None))
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("the inputs name the same image twice; pass each file or folder once")
    return records, bad


def _prefixed(record, prefix: str):
    if not prefix:
        return record
    from dataclasses import replace

    return replace(record, image_id=prefix + record.image_id)


def _decode(record) -> tuple[torch.Tensor | None, str, tuple[str, ...]]:
    from lare2lib.data.images import BadImageError, decode_image

    try:
        decoded = decode_image(record.path)
    except BadImageError as error:
        return None, f"bad: {error.reason}: {error.message}", ()
    except OSError as error:  # permissions, I/O errors
        return None, f"bad: unreadable: {error}", ()
    array = np.asarray(decoded.image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1), "ok", tuple(decoded.notes)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def score_records(detector, records: Sequence, *, bad: dict[str, str] | None = None, seed: int = 0,
                  tries: int = 1, batch_size: int = 32, progress: bool = True) -> list[ScoredImage]:
    """Decode and score ``records`` in chunks (memory stays bounded), bad files reported."""
    from tqdm.auto import tqdm

    results = [ScoredImage(image_id, "", None, f"bad: {reason}") for image_id, reason in (bad or {}).items()]
    bar = tqdm(total=len(records), desc="score", unit="img", disable=not progress)
    for chunk in _chunks(list(records), max(1, batch_size) * 4):
        decoded = [(record, *_decode(record)) for record in chunk]
        good = [(record, pixels) for record, pixels, status, _ in decoded if pixels is not None]
        scores: list[float] = []
        if good:
            with torch.inference_mode():
                scores = detector.score_images([p for _, p in good], [r.image_id for r, _ in good],
                                               seed=seed, tries=tries, batch_size=batch_size,
                                               class_names=[r.class_name for r, _ in good]).tolist()
        by_id = {record.image_id: score for (record, _), score in zip(good, scores)}
        for record, _, status, notes in decoded:
            results.append(ScoredImage(record.image_id, str(record.path), by_id.get(record.image_id),
                                       status, notes))
        bar.update(len(chunk))
    bar.close()
    return results


def write_scores_csv(results: Sequence[ScoredImage], out: str | os.PathLike[str] | None,
                     threshold: float | None) -> str:
    """CSV text of the results (written atomically to ``out`` when given); ``threshold`` None
    leaves the label column empty (a training-free score has no natural threshold)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        label = "" if r.score is None or threshold is None else ("fake" if r.score > threshold else "real")
        score = "" if r.score is None else f"{r.score:.6f}"
        writer.writerow([r.image_id, r.path, score, label, r.status])
    text = buffer.getvalue()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    return text


# -- command line -------------------------------------------------------------------------------


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", required=True,
                        help="detector checkpoint (.safetensors written by lare2), or a training-free "
                             "detector: aeroblade (--autoencoders, --distance) or mean-lare (--ldm)")
    parser.add_argument("--autoencoders", default="mini:kl_ae,mini:vq_ae",
                        help="aeroblade: comma-separated autoencoder references (mini:NAME, a local "
                             "folder such as TAEF2's, or a hub id; default mini:kl_ae,mini:vq_ae)")
    parser.add_argument("--distance", default="backbone", choices=("backbone", "pixel", "lpips"),
                        help="aeroblade's distance (lpips: the release's LPIPS-VGG layer 2)")
    parser.add_argument("--ldm", default="mini:kl_ldm",
                        help="mean-lare: the reference LDM (mini:NAME, a diffusers folder or a hub id)")
    parser.add_argument("--tries", type=int, default=1,
                        help="random crops per image, P(fake) averaged (reconstruction classifiers: "
                             "the paper's '1 try' / '10 tries')")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and LaRE noise (per image id)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--class-from", choices=("none", "imagenet"), default="none",
                        help="class names of scanned folders for a class prompt (EGRE): none, or "
                             "ImageNet ids in file names (GenImage); a manifest's class_name "
                             "column always counts")


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("images", nargs="+", help="image files, folders (recursive) or manifests")
    _common_arguments(parser)
    parser.add_argument("--out", help="CSV to write (default: print to standard output)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="score above which the label column says 'fake' (default 0.5 for a "
                             "checkpoint's P(fake); training-free scores have no natural threshold, "
                             "so their label column stays empty unless one is given)")
    return parser


def _load(args: argparse.Namespace):
    """The checkpoint detector ``--detector`` names, or a training-free one by name."""
    from lare2lib.detectors.registry import DetectorError, load_detector
    from lare2lib.detectors.training_free import TRAINING_FREE, training_free_detector
    from lare2lib.models.devices import resolve_device

    if args.detector not in TRAINING_FREE and not Path(args.detector).exists():
        raise DetectorError(f"--detector {args.detector}: no detector checkpoint at that path, and not a training-free "
                            f"detector ({', '.join(sorted(TRAINING_FREE))})")
    device = resolve_device(args.device)
    if args.detector in TRAINING_FREE:
        autoencoders = [ref.strip() for ref in args.autoencoders.split(",") if ref.strip()]
        return training_free_detector(args.detector, autoencoders=autoencoders, ldm=args.ldm,
                                      distance=args.distance, profile=getattr(args, "profile", "mini"),
                                      seed=args.seed, device=device)
    return load_detector(args.detector, device=device)


def _threshold(args: argparse.Namespace, detector) -> float | None:
    """``--threshold``, else 0.5 for a checkpoint's P(fake) and None (no label) for a training-free score."""
    from lare2lib.detectors.training_free import TrainingFreeDetector

    if args.threshold is not None:
        return args.threshold
    return None if isinstance(detector, TrainingFreeDetector) else 0.5


class NoImagesError(ValueError):
    """The inputs hold no image file at all (an empty folder, a wrong path pattern)."""


def predict_command(args: argparse.Namespace) -> int:
    if args.tries < 1:
        raise ValueError("--tries must be at least 1")
    started = time.perf_counter()
    detector = _load(args)
    records, bad = collect_images(args.images, args.class_from)
    if not records and not bad:
        raise NoImagesError(f"no images found in {', '.join(args.images)} (looked for image files, "
                            "recursively in folders); nothing was scored")
    results = score_records(detector, records, bad=bad, seed=args.seed, tries=args.tries,
                            batch_size=args.batch_size, progress=not args.no_progress)
    text = write_scores_csv(results, args.out, _threshold(args, detector))
    if args.out is None:
        sys.stdout.write(text)
    failed = [r for r in results if r.score is None]
    scored = len(results) - len(failed)
    print(f"scored {scored} image(s) in {time.perf_counter() - started:.1f} s with "
          f"{detector.kind} ({args.detector}); {len(failed)} bad"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    for r in failed:
        print(f"  {r.image_id}: {r.status}", file=sys.stderr)
    return 0


# -- evaluate ----------------------------------------------------------------------------------


def evaluate_sets(detector, real: Sequence[torch.Tensor], real_ids: Sequence[str],
                  fakes: dict[str, tuple], *, seed: int = 0, tries: int = 1, batch_size: int = 32,
                  bootstrap: int = 1000, progress: bool = False,
                  real_classes: Sequence[str | None] | None = None) -> dict[str, Any]:
    """:func:`lare2lib.eval.metrics.real_vs_sets` of a detector on decoded image lists.

    ``fakes``: name → ``(images, ids)`` or ``(images, ids, class_names)``; ``real_classes``
    and those class names (one per image, None when unknown) reach the detector's prompt.
    """
    from lare2lib.eval import metrics

    def score(images, ids, classes=None):
        with torch.inference_mode():
            return detector.score_images(list(images), list(ids), seed=seed, tries=tries,
                                         batch_size=batch_size, progress=progress,
                                         class_names=None if classes is None else list(classes)).numpy()

    real_scores = score(real, real_ids, real_classes)
    fake_scores = {name: score(*parts) for name, parts in fakes.items()}
    return metrics.real_vs_sets(real_scores, fake_scores, bootstrap=bootstrap, seed=seed)


def _world_sets(profile_name: str, seed: int) -> tuple:
    from lare2lib.core.profiles import get_profile
    from lare2lib.world.build import load_world

    world = load_world(get_profile(profile_name, seed=seed), progress=False)
    real = world.real["test"]
    fakes = {name: world.generated(name, "test") for name in (g.name for g in world.generators)}
    for ae in ("kl_ae", "vq_ae"):
        fakes[f"recon_{ae}"] = world.reconstructions(ae, "test")
    names = world.class_names
    as_lists = lambda s: (list(s.pixels), list(s.ids),  # noqa: E731 - uint8 (3, H, W) per image
                          [names[int(c)] for c in s.class_index])
    return as_lists(real), {name: as_lists(s) for name, s in fakes.items()}


def _folder_images(folder: str, class_from: str = "none") -> tuple[list[torch.Tensor], list[str], list]:
    records, _ = collect_images([folder], class_from)
    pixels, ids, classes = [], [], []
    for record in records:
        image, status, _ = _decode(record)
        if image is None:
            print(f"  skipped {record.image_id}: {status}", file=sys.stderr)
            continue
        pixels.append(image)
        ids.append(record.image_id)
        classes.append(record.class_name)
    return pixels, ids, classes


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _common_arguments(parser)
    parser.add_argument("--profile", default="mini",
                        help="world whose test sets are scored when no --real is given (mini|smoke)")
    parser.add_argument("--real", help="folder of real test images (instead of the world's)")
    parser.add_argument("--fake", action="append", default=[], metavar="NAME=DIR",
                        help="a folder of generated test images, repeatable")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the intervals")
    parser.add_argument("--out", help="JSON file for the metrics (default: standard output)")
    return parser


def evaluate_command(args: argparse.Namespace) -> int:
    detector = _load(args)
    if args.real:
        if not args.fake:
            raise ValueError("--real needs at least one --fake NAME=DIR")
        real = _folder_images(args.real, args.class_from)
        fakes = {}
        for item in args.fake:
            name, sep, folder = item.partition("=")
            if not sep:
                raise ValueError(f"--fake {item!r}: expected NAME=DIR")
            fakes[name] = _folder_images(folder, args.class_from)
    else:
        real, fakes = _world_sets(args.profile, args.seed)
    table = evaluate_sets(detector, real[0], real[1], fakes, seed=args.seed, tries=args.tries,
                          batch_size=args.batch_size, bootstrap=args.bootstrap,
                          progress=not args.no_progress, real_classes=real[2])
    text = json.dumps({"detector": str(args.detector), "kind": detector.kind, "tries": args.tries,
                       "seed": args.seed, "metrics": table}, indent=1, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    print(_table(table), file=sys.stderr)
    return 0


def _table(table: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'test set':<18} {'acc':>6} {'ap':>6} {'auc':>6} {'tpr@5%':>7}"]
    for name, row in table.items():
        lines.append(f"{name:<18} {row['acc']:>6.3f} {row['ap']:>6.3f} {row['auc']:>6.3f} {row['tpr@5%']:>7.3f}")
    return "\n".join(lines)
