"""`python -m trainer cv`: grouped k-fold cross-validation of the CNN beside the colour baseline, resumable."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contracts.confs import TrainerConfs
from trainer import cv_ood, ood_sweep
from trainer import cv_summary as S
from trainer.cv_notes import add_notes, notes_lines
from trainer.config import load_trainer_confs
from trainer.data import ScannedDataset, scan_dataset
from trainer.errors import TrainerError
from trainer.report import write_json, write_markdown
from trainer.split import Folds, fold_split, grouped_folds

log = logging.getLogger(__name__)

DONE = "metrics.json"  # written last: a fold folder without it is rerun


def parse_only_folds(text: str | None, k: int) -> list[int]:
    """Fold numbers from '0,2,3' (all folds when None); TrainerError for junk or out-of-range numbers."""
    if text is None:
        return list(range(k))
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            fold = int(part)
        except ValueError:
            raise TrainerError(f"--only-folds takes comma-separated fold numbers like 0,2 (got {text!r})") from None
        if not 0 <= fold < k:
            raise TrainerError(f"--only-folds: fold {fold} is out of range; with --folds {k} folds are 0 to {k - 1}")
        chosen.add(fold)
    return sorted(chosen)


def _file_name(dataset: ScannedDataset, i: int) -> str:
    record = dataset.records[i]
    return f"{record.label}/{record.path.name}"


def fold_plan(dataset: ScannedDataset, folds: Folds, data_dir: Path, block_size: int, seed: int) -> dict[str, Any]:
    """The fold assignment with a digest over (fold, class, content hash): resuming checks it is unchanged."""
    records = dataset.records
    lines = sorted(f"{f}\t{records[i].label}\t{records[i].sha256}" for f, idx in enumerate(folds.folds) for i in idx)
    comps = folds.components
    return {
        "digest": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
        "folds": len(folds.folds), "block_size": block_size, "seed": seed, "data_dir": str(data_dir),
        "classes": dataset.classes, "kept": len(comps.keep), "exact_duplicates_removed": len(comps.duplicates),
        "conflicting_labels_removed": len(comps.conflicts), "near_duplicate_groups": len(comps.groups),
        "components": len(comps.members),
        "components_per_fold": [sum(f == k for f in folds.fold_of.values()) for k in range(len(folds.folds))],
        "sizes": [{c: sum(records[i].label == c for i in idx) for c in dataset.classes} for idx in folds.folds],
        "files": [[_file_name(dataset, int(i)) for i in idx] for idx in folds.folds],
    }


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("digest") != plan["digest"]:
            raise TrainerError(
                f"{out} holds folds made from other data, seed, block size or number of folds; "
                "choose another --out (or rerun with the same settings)"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, plan)


def run_fold(
    confs: TrainerConfs, dataset: ScannedDataset, folds: Folds, fold: int, out: Path, robustness_images: int, verbose: int,
    training_seed: int | None = None,
) -> dict[str, Any]:
    """Train on the fold's train part, pick the epoch on validation, measure CNN and baseline on the fold.

    `training_seed` (default: the fold seed, confs.seed) seeds only training; the split, the robustness subsample
    and the OOD sets stay those of the fold seed, so runs with other training seeds measure the same images.
    """
    from trainer.baseline import ColourBaseline
    from trainer.predict import keras_predict
    from trainer.metrics import classification_report
    from trainer.robustness import robustness_table
    from trainer.train import train_model, training_backend

    index = fold_split(folds, fold, confs.split.validation_fraction, confs.seed)
    labels, classes = dataset.labels, dataset.classes
    train, test = index.split["train"], index.split["test"]
    log.info("fold %d: %s", fold, {k: len(v) for k, v in index.split.items()})
    training_seed = confs.seed if training_seed is None else training_seed
    result = train_model(confs.model_copy(update={"seed": training_seed}), dataset, index, verbose=verbose)

    def cnn(batch: np.ndarray) -> np.ndarray:
        return keras_predict(result.model, batch)

    baseline = ColourBaseline(training_seed).fit(dataset.images[train], labels[train])

    def colour(batch: np.ndarray) -> np.ndarray:
        probs = baseline.predict_proba(batch)
        return np.pad(probs, ((0, 0), (0, len(classes) - probs.shape[1])))

    test_images, test_labels = dataset.images[test], labels[test]
    cnn_probs, colour_probs = cnn(test_images), colour(test_images)
    rng = np.random.default_rng([confs.seed, fold])
    pick = np.sort(rng.choice(len(test), min(robustness_images, len(test)), replace=False))
    table = robustness_table(test_images[pick], test_labels[pick], {"CNN": cnn, "colour baseline": colour}) if len(pick) else {}
    fold_dir = out / f"fold-{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        fold_dir / "predictions.npz", indices=test, files=np.array([_file_name(dataset, int(i)) for i in test]),
        labels=test_labels, cnn_probs=cnn_probs, baseline_probs=colour_probs, classes=np.array(classes),
    )
    result.model.save(fold_dir / "model.keras")
    metrics = {
        "fold": fold,
        "training_seed": training_seed,
        "sizes": {name: {c: int(sum(labels[idx] == k)) for k, c in enumerate(classes)} for name, idx in index.split.items()},
        "schedule": {
            "max_epochs": confs.epochs, "max_minutes": confs.max_train_minutes, "patience": confs.patience,
            "epochs_run": len(result.history.get("loss", [])), "best_epoch": result.best_epoch,
            "stopped_by": result.stopped_by, "train_seconds": result.seconds,
        },
        "cnn": classification_report(test_labels, cnn_probs, classes),
        "colour_baseline": classification_report(test_labels, colour_probs, classes),
        "robustness": table,
        "robustness_images": len(pick),
        cv_ood.KEY: cv_ood.fold_ood(result.model, dataset, index, confs, fold_dir),
        "trained_with": training_backend(),
        "history": result.history,
    }
    write_json(fold_dir / DONE, metrics)
    import keras

    keras.backend.clear_session()  # the next fold starts from a clean graph, not one that grows per fold
    return metrics


def _load_predictions(out: Path, done: list[int]) -> dict[int, dict[str, np.ndarray]]:
    return {f: dict(np.load(out / f"fold-{f}" / "predictions.npz")) for f in done}


def _combine_predictions(out: Path, predictions: dict[int, dict[str, np.ndarray]]) -> None:
    parts = list(predictions.values())
    if not parts:
        return
    merged = {key: np.concatenate([p[key] for p in parts]) for key in ("indices", "files", "labels", "cnn_probs", "baseline_probs")}
    fold_ids = np.concatenate([np.full(len(p["labels"]), f) for f, p in predictions.items()])
    np.savez_compressed(out / "oof.npz", fold=fold_ids, classes=parts[0]["classes"], **merged)


def component_names(folds: Folds, block_size: int) -> dict[int, str]:
    """Each kept image's component, named by class and the file numbers of its first block."""
    comps, names = folds.components, {}
    for comp, members in comps.members.items():
        label, block = comp.rsplit("/", 1)
        start = int(block) * block_size
        merged = len({comps.block_of[i] for i in members}) > 1
        name = f"{label} {start:03d}-{start + block_size - 1:03d}" + (" (+ merged)" if merged else "")
        names.update({i: name for i in members})
    return names


def _error_clusters(predictions: dict[int, dict[str, np.ndarray]], component_of: dict[int, str]) -> dict[str, Any]:
    clusters: dict[str, Any] = {}
    for fold, p in predictions.items():
        comps = [component_of.get(int(i), "unknown") for i in p["indices"]]
        labels, cnn, colour = p["labels"], p["cnn_probs"].argmax(1), p["baseline_probs"].argmax(1)
        clusters[str(fold)] = {
            "cnn": S.error_clusters(labels, cnn, comps), "colour_baseline": S.error_clusters(labels, colour, comps),
            "both_wrong": int(((cnn != labels) & (colour != labels)).sum()),
        }
    return clusters


def report(
    out: Path, plan: dict[str, Any], confs: TrainerConfs, release: TrainerConfs, component_of: dict[int, str] | None = None
) -> dict[str, Any]:
    """Summarise every finished fold in out into cv.json, cv.md and oof.npz (with where errors fall, given components)."""
    done = [f for f in range(plan["folds"]) if (out / f"fold-{f}" / DONE).is_file()]
    results = [json.loads((out / f"fold-{f}" / DONE).read_text()) for f in done]
    predictions = _load_predictions(out, done)
    focus = S.focus_class(plan["classes"])
    summary = S.summarise(results, focus)
    notes = notes_lines(plan, confs, release, results, out)
    data = {
        "folds": plan["folds"], "folds_done": done, "complete": len(done) == plan["folds"], "focus_class": focus,
        "classes": plan["classes"], "plan_digest": plan["digest"], "robustness_images_per_fold": [r["robustness_images"] for r in results],
        "schedule": {"max_epochs": confs.epochs, "max_minutes": confs.max_train_minutes, "patience": confs.patience,
                     "release_epochs": release.epochs, "release_max_minutes": release.max_train_minutes},
        "notes": notes, **summary, "ood": cv_ood.summarise_ood(results), "ood_rule_sweep": cv_ood.rule_sweep(out, done),
        "error_clusters": _error_clusters(predictions, component_of) if component_of else {},
    }
    write_json(out / "cv.json", data)
    _combine_predictions(out, predictions)
    if results:
        sections = [
            ("How", notes),
            ("Summary (mean over folds)", S.summary_rows(summary, focus)),
            ("Per fold", S.fold_rows(summary, focus)),
            ("Per-class recall per fold (CNN / colour baseline)", S.class_rows(summary, plan["classes"])),
        ]
        if summary["robustness"]:
            sections.append(("Robustness (accuracy on each fold's robustness subsample, mean over folds)", S.robustness_rows(summary)))
        if data["ood"]:
            sections.append(("In-distribution images flagged by each fold's OOD detector", cv_ood.ood_rows(data["ood"])))
        if data["ood_rule_sweep"]:
            rows = ood_sweep.sweep_rows(data["ood_rule_sweep"], cv_ood.configured_rule(confs))
            rows += ["", "What the detector can do at best (for information: this looks at the evaluation sets and chooses nothing):",
                     "", *ood_sweep.frontier_rows(data["ood_rule_sweep"])]
            sections.append(("OOD threshold rule chosen by cross-validation", rows))
        if data["error_clusters"]:
            title = f"Where the errors fall (components: blocks of {plan['block_size']} file numbers, merged through near duplicates)"
            sections.append((title, S.error_rows(data["error_clusters"])))
        write_markdown(out / "cv.md", f"Grouped {plan['folds']}-fold cross-validation", sections)
    return data


def cmd_cv(args: argparse.Namespace) -> int:
    """Run the requested folds that are not yet in --out, then summarise all finished folds."""
    if args.folds < 2:
        raise TrainerError(f"--folds must be at least 2 (got {args.folds})")
    chosen = parse_only_folds(args.only_folds, args.folds)
    if args.robustness_images < 0:
        raise TrainerError("--robustness-images must be 0 or more")
    if args.training_seed is not None and args.training_seed < 0:
        raise TrainerError("--training-seed must be 0 or more")
    overrides = {
        "data_dir": str(args.data) if args.data else None, "epochs": args.epochs,
        "seed": args.seed, "max_train_minutes": args.max_minutes,
    }
    confs, release = load_trainer_confs(args.confs, overrides), load_trainer_confs(args.confs)
    data_dir = Path(confs.data_dir)
    dataset = scan_dataset(data_dir, confs.image_size)
    folds = grouped_folds(dataset, args.folds, confs.split.block_size, confs.seed)
    out = args.out or Path(confs.runs_dir) / f"cv-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    plan = fold_plan(dataset, folds, data_dir, confs.split.block_size, confs.seed)
    _check_plan(out, plan)
    component_of = component_names(folds, confs.split.block_size)
    add_notes(out, args.note or [])
    for fold in chosen:
        if (out / f"fold-{fold}" / DONE).is_file():
            log.info("fold %d is already in %s: skipped", fold, out)
            continue
        # Keras writes epoch lines to stdout, which must hold only the JSON object under --json.
        run_fold(confs, dataset, folds, fold, out, args.robustness_images, 0 if args.json else 2, args.training_seed)
        report(out, plan, confs, release, component_of)
    cv_ood.backfill(out, [f for f in chosen if (out / f"fold-{f}" / DONE).is_file()], folds, dataset, confs)
    data = report(out, plan, confs, release, component_of)
    if args.json:
        print(json.dumps({**data, "out": str(out)}))
        return 0
    focus = data["focus_class"]
    print(f"grouped {plan['folds']}-fold CV in {out}: folds done {data['folds_done']}")
    if data["per_fold"]:
        print("\n".join(S.summary_rows(data, focus) + [""] + S.fold_rows(data, focus)))
    return 0
