"""Implementations of the trainer's commands (heavy imports stay inside the commands that need them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from trainer.config import load_trainer_confs
from trainer.data import scan_dataset
from trainer.errors import TrainerError
from trainer.release_split import release_index
from trainer.split import split_digest

log = logging.getLogger(__name__)


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda files: tqdm(files, desc="decoding", unit="img", leave=False, file=sys.stderr)


def _load_split(confs, data_dir: Path, progress: bool = True, require_all: bool = True, final: bool = True):  # type: ignore[no-untyped-def]
    dataset = scan_dataset(data_dir, confs.image_size, progress=_progress(progress))
    index = release_index(dataset, confs, final=None if final else False)
    for name, idx in index.split.items():
        if len(idx) == 0 and require_all:
            raise TrainerError(f"the {name} split is empty: {data_dir} has too few images or blocks")
        if len(idx) == 0:
            log.warning("the %s split is empty: too few images or blocks", name)
    return dataset, index


def _index_summary(dataset, index, data_dir: Path) -> dict:  # type: ignore[no-untyped-def]
    records = dataset.records
    per_split = {
        name: {c: int(sum(records[i].label == c for i in idx)) for c in dataset.classes} for name, idx in index.split.items()
    }
    return {
        "data_dir": str(data_dir),
        "classes": dataset.classes,
        "decoded": len(records),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped],
        "exact_duplicates_removed": [[records[a].path.name, records[b].path.name] for a, b in index.duplicates],
        "conflicting_labels_removed": [records[i].path.name for i in index.conflicts],
        "near_duplicate_groups": [[records[i].path.name for i in g] for g in index.groups],
        "kept": len(index.keep),
        "splits": per_split,
        "training_data_sha256": split_digest(dataset, index),
    }


def cmd_index(args: argparse.Namespace) -> int:
    """Decode, deduplicate, group and split; print a summary."""
    confs = load_trainer_confs(args.confs)
    data_dir = args.data or Path(confs.data_dir)
    dataset, index = _load_split(confs, data_dir, require_all=False, final=False)
    summary = _index_summary(dataset, index, data_dir)
    if args.out:
        files = {name: [str(dataset.records[i].path) for i in idx] for name, idx in index.split.items()}
        Path(args.out).write_text(json.dumps({**summary, "files": files}, indent=2))
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{summary['decoded']} images decoded in {len(dataset.classes)} classes; {len(summary['skipped'])} skipped")
    for s in summary["skipped"]:
        print(f"  skipped {s['path']}: {s['reason']}")
    print(f"{len(index.duplicates)} exact duplicates removed, {len(index.conflicts)} with conflicting labels removed")
    print(f"{len(index.groups)} near-duplicate groups kept inside one split")
    for name, counts in summary["splits"].items():
        print(f"  {name:10s} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    """Write copies of every image with the configured training augmentations, in the same class folders."""
    from PIL import Image

    from trainer.augment import Augmenter, mask_scale_bar
    from trainer.config import augment_config

    dataset = scan_dataset(args.data, image_size=224, min_classes=1)
    augmenter, rng = Augmenter(augment_config(load_trainer_confs(args.confs))), np.random.default_rng(args.seed)
    for record, image in zip(dataset.records, dataset.images):
        folder = args.out / record.label
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(args.copies):
            out = augmenter(image, rng)
            out = mask_scale_bar(out) if args.mask_scale_bar else out
            Image.fromarray(out).save(folder / f"{record.path.stem}-aug{copy}.png")
    print(f"wrote {len(dataset.records) * args.copies} images to {args.out}")
    return 0


def _run_dir(confs, requested: Path | None) -> Path:  # type: ignore[no-untyped-def]
    if requested:
        return requested
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(confs.runs_dir) / f"{confs.model}-{stamp}"


def _point_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.resolve())


def cmd_train(args: argparse.Namespace) -> int:
    """Train, save the run (config, history, model) and assess it on the test split with Keras."""
    import time

    overrides = {
        "data_dir": str(args.data) if args.data else None, "epochs": args.epochs, "model": args.model,
        "image_size": args.image_size, "internal_size": args.internal_size, "batch_size": args.batch_size,
        "seed": args.seed, "grayscale": args.grayscale, "max_train_minutes": args.max_minutes,
    }
    confs = load_trainer_confs(args.confs, overrides)
    start = time.monotonic()
    dataset, index = _load_split(confs, Path(confs.data_dir), progress=not args.quiet)
    run_dir = _run_dir(confs, args.run_dir)
    from trainer.evaluate import assess
    from trainer.predict import keras_predict
    from trainer.train import save_run, train_model

    result = train_model(confs, dataset, index, verbose=2 if args.quiet else 1, weights=args.weights)
    digest = split_digest(dataset, index)
    extra = {"classes": dataset.classes, "training_data_sha256": digest, "index": _index_summary(dataset, index, Path(confs.data_dir))}
    save_run(run_dir, confs, result, extra)
    metrics = assess(
        lambda b: keras_predict(result.model, b), dataset, index, run_dir / "report",
        f"Run {run_dir.name} (Keras)", confs.seed, result.history,
    )
    total = time.monotonic() - start
    (run_dir / "timing.json").write_text(json.dumps({"train_seconds": result.seconds, "total_seconds": total}))
    _point_latest(run_dir)
    test = metrics["test"]
    print(
        f"run {run_dir}: test accuracy {100 * test['accuracy']:.2f}% "
        f"(colour baseline {100 * metrics['colour_baseline']['accuracy']:.2f}%), "
        f"training {result.seconds / 60:.1f} min, total {total / 60:.1f} min"
    )
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    """Grouped k-fold cross-validation (see trainer/cv.py)."""
    from trainer.cv import cmd_cv as run_cv

    return run_cv(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Convert a run's model to IR and print the agreement with Keras."""
    from trainer.release import export_run

    info = export_run(args.run, args.confs, int8=args.int8)
    print(json.dumps(info, indent=2))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    """Export, assess through OpenVINO and write the signed package with its report."""
    from trainer.release import package_run

    path = package_run(args.run, args.confs, args.name, args.version, args.out, args.int8)
    print(f"package written: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a package through OpenVINO; --json prints one object."""
    from contracts.confs import load_confs
    from trainer.evaluate import evaluate_package
    from trainer.keys import trusted_keys

    confs = load_confs(args.confs)
    keys = trusted_keys(confs.ota.trusted_public_keys)
    if not keys:
        raise TrainerError("no trusted public keys in confs.json: run `python -m trainer keys --trust` first")
    select = None
    if args.split == "test":
        t = confs.trainer

        def select(dataset):  # type: ignore[no-untyped-def]
            return release_index(dataset, t).split["test"]

    result = evaluate_package(args.package, args.data, keys, select)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['package']['name']} {result['package']['version']} on {result['n_images']} images")
    print(f"accuracy {100 * result['accuracy']:.2f}%  macro recall {100 * result['macro_recall']:.2f}%  {result['ms_per_image']:.2f} ms/image")
    for name, m in result["per_class"].items():
        print(f"  {name:8s} precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} n={m['support']}")
    print("confusion matrix (rows true, columns predicted):", result["confusion_matrix"])
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Create the signing key if needed, print its public key, optionally trust it."""
    from contracts.model_package import public_key_text
    from trainer.keys import ensure_signing_key, trust_key

    confs = load_trainer_confs(args.confs)
    key = ensure_signing_key(Path(confs.signing_key))
    print(public_key_text(key))
    if args.trust:
        added = trust_key(args.confs, key)
        print("added to ota.trusted_public_keys" if added else "already trusted")
    return 0
