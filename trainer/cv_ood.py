"""Each cross-validation fold's OOD detector: fitted on the fold's train part, thresholded on its validation part,
measured on its test fold, which took part in neither: the in-distribution flag rate on unseen patients."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from contracts.confs import TrainerConfs
from trainer import ood_sweep
from trainer.cv_summary import mean_ci
from trainer.data import ScannedDataset
from trainer.errors import TrainerError
from trainer.report import write_json
from trainer.split import Folds, SplitIndex, fold_split

log = logging.getLogger(__name__)

KEY = "ood"


def fold_ood(
    model: Any, dataset: ScannedDataset, index: SplitIndex, confs: TrainerConfs, fold_dir: Path | None = None
) -> dict[str, Any]:
    """Fit the release's detector on this fold; flag its test images, and the OOD sets made from them, at the
    threshold its validation part sets. With `fold_dir`, keep the score's parts there for the rule sweep."""
    from trainer.augment import mask_scale_bar
    from trainer.ood import feature_model, predict_features
    from trainer.ood_report import fit_detector
    from trainer.ood_sets import ood_sets
    from trainer.stain_gate import stain_spread

    fit, info = fit_detector(model, dataset, index, confs.ood_quantile, confs.seed, confs.ood_stain_quantile,
                             confs.ood_threshold_margin)
    features_model = feature_model(model)
    images, validation = dataset.images[index.split["test"]], dataset.images[index.split["validation"]]
    if not len(images):
        raise TrainerError("a fold without test images has no OOD figures")
    sets = ood_sets(np.stack([mask_scale_bar(img) for img in images]), seed=confs.seed)
    tuning = ood_sweep.tuning_sets(np.stack([mask_scale_bar(img) for img in validation])) if len(validation) else {}
    parts = ood_sweep.components(
        lambda batch: fit.scores(predict_features(features_model, batch)[1]), stain_spread,
        {"validation": validation, "test": images, **sets, **tuning}, stain_spread(dataset.images[index.split["train"]]),
    )
    if fold_dir is not None:
        ood_sweep.save(fold_dir / ood_sweep.FILE, parts)

    flagged, gated = ood_sweep.flags(parts, "test", fit.threshold, fit.stain_limits)
    return {
        "threshold": float(fit.threshold),
        "validation_flag_rate": info["validation_flag_rate"],
        "test_flag_rate": float(flagged.mean()),
        "test_stain_gated": float(gated.mean()),
        "n_test": len(images),
        "sets": {name: float(ood_sweep.flags(parts, name, fit.threshold, fit.stain_limits)[0].mean()) for name in sets},
    }


def backfill(out: Path, done: list[int], folds: Folds, dataset: ScannedDataset, confs: TrainerConfs) -> None:
    """Measure the detector of folds that finished without it (or without its OOD sets), from each fold's saved model."""
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers the saved models use)

    for fold in done:
        path = out / f"fold-{fold}" / "metrics.json"
        metrics = json.loads(path.read_text())
        model_file = path.parent / "model.keras"
        measured = "sets" in metrics.get(KEY, {}) and (path.parent / ood_sweep.FILE).is_file()
        if measured or not model_file.is_file():
            continue
        log.info("fold %d: measuring its OOD detector from %s", fold, model_file)
        index = fold_split(folds, fold, confs.split.validation_fraction, confs.seed)
        metrics[KEY] = fold_ood(keras.models.load_model(model_file), dataset, index, confs, path.parent)
        write_json(path, metrics)
        keras.backend.clear_session()


def summarise_ood(fold_results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean and interval of the per-fold test flag rates, with each fold's figures; None if no fold measured it."""
    measured = [r for r in fold_results if KEY in r]
    if not measured:
        return None
    names = [name for name in measured[0][KEY].get("sets", {}) if all(name in r[KEY].get("sets", {}) for r in measured)]
    return {
        "per_fold": [{"fold": r["fold"], **{k: v for k, v in r[KEY].items() if k != "sets"}} for r in measured],
        "test_flag_rate": mean_ci([r[KEY]["test_flag_rate"] for r in measured]),
        "sets": {name: mean_ci([r[KEY]["sets"][name] for r in measured]) for name in names},
    }


def flag_rate_line(summary: dict[str, Any]) -> str:
    """The in-distribution flag rate over folds, with its interval and the highest fold."""
    rate = summary["test_flag_rate"]
    low, high = rate["low"], rate["high"]
    interval = f" [{100 * low:.2f}, {100 * high:.2f}]" if low is not None and high is not None else ""
    return (f"in-distribution test images flagged, mean over {rate['n']} folds: {100 * rate['mean']:.2f}%{interval}; "
            f"highest fold {100 * rate['max']:.2f}% (target at most 2%)")


def sets_line(summary: dict[str, Any]) -> str | None:
    """The weakest OOD set's lowest fold, or None when no set was measured."""
    sets = summary.get("sets") or {}
    if not sets:
        return None
    name = min(sets, key=lambda n: sets[n]["min"])
    return f"OOD sets made from each fold's test images: lowest fold of any set {100 * sets[name]['min']:.1f}% ({name}; target at least 95%)"


def ood_rows(summary: dict[str, Any]) -> list[str]:
    """Markdown: each fold's threshold and flag rates, the mean with its interval, then each OOD set over folds."""
    rows = [
        "| fold | threshold | validation flagged | test images | test flagged | of them by the stain gate |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {f['fold']} | {f['threshold']:.3f} | {100 * f['validation_flag_rate']:.2f}% | {f['n_test']} | "
          f"{100 * f['test_flag_rate']:.2f}% | {100 * f['test_stain_gated']:.2f}% |" for f in summary["per_fold"]),
        "",
        f"- {flag_rate_line(summary)}",
    ]
    sets = summary.get("sets") or {}
    if sets:
        rows += [
            "",
            "| OOD set (made from each fold's test images) | mean flagged | lowest fold |",
            "|---|---:|---:|",
            *(f"| {name} | {100 * stats['mean']:.1f}% | {100 * stats['min']:.1f}% |" for name, stats in sets.items()),
            "",
            f"- {sets_line(summary)}",
        ]
    return rows


def configured_rule(confs: TrainerConfs) -> ood_sweep.Rule:
    """The threshold rule the settings give."""
    return ood_sweep.Rule(confs.ood_quantile, confs.ood_threshold_margin, confs.ood_stain_quantile)


def rule_sweep(out: Path, done: list[int]) -> dict[str, Any] | None:
    """The rule sweep over the finished folds, when every one of them kept its score's parts."""
    paths = [out / f"fold-{fold}" / ood_sweep.FILE for fold in done]
    if not paths or not all(path.is_file() for path in paths):
        return None
    return ood_sweep.sweep([ood_sweep.load(path) for path in paths])
