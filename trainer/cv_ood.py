"""Each cross-validation fold's OOD detector: fitted on the fold's train part, thresholded on its validation part,
measured on its test fold, which took part in neither: the in-distribution flag rate on unseen patients."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from contracts.confs import TrainerConfs
from trainer.cv_summary import mean_ci
from trainer.data import ScannedDataset
from trainer.split import Folds, SplitIndex, fold_split

log = logging.getLogger(__name__)

KEY = "ood"


def fold_ood(model: Any, dataset: ScannedDataset, index: SplitIndex, confs: TrainerConfs) -> dict[str, Any]:
    """Fit the release's detector on this fold and flag its test images at the threshold its validation sets."""
    from trainer.ood import feature_model, predict_features
    from trainer.ood_report import fit_detector
    from trainer.stain_gate import combined_scores, stain_ratios

    fit, info = fit_detector(model, dataset, index, confs.ood_quantile, confs.seed, confs.ood_stain_quantile)
    images = dataset.images[index.split["test"]]
    _probs, features = predict_features(feature_model(model), images)
    scores, gated = fit.scores(features), np.zeros(len(images), bool)
    if fit.stain_limits is not None:
        ratios = stain_ratios(images, fit.stain_limits)
        scores, gated = combined_scores(scores, ratios, fit.threshold), ratios > 1.0
    return {
        "threshold": float(fit.threshold),
        "validation_flag_rate": info["validation_flag_rate"],
        "test_flag_rate": float((scores > fit.threshold).mean()) if len(images) else 0.0,
        "test_stain_gated": float(gated.mean()) if len(images) else 0.0,
        "n_test": len(images),
    }


def backfill(out: Path, done: list[int], folds: Folds, dataset: ScannedDataset, confs: TrainerConfs) -> None:
    """Measure the detector of folds that finished without it, from the model each fold saved."""
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers the saved models use)

    for fold in done:
        path = out / f"fold-{fold}" / "metrics.json"
        metrics = json.loads(path.read_text())
        model_file = path.parent / "model.keras"
        if KEY in metrics or not model_file.is_file():
            continue
        log.info("fold %d: measuring its OOD detector from %s", fold, model_file)
        index = fold_split(folds, fold, confs.split.validation_fraction, confs.seed)
        metrics[KEY] = fold_ood(keras.models.load_model(model_file), dataset, index, confs)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(metrics, indent=2))
        tmp.replace(path)
        keras.backend.clear_session()


def summarise_ood(fold_results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean and interval of the per-fold test flag rates, with each fold's figures; None if no fold measured it."""
    measured = [r for r in fold_results if KEY in r]
    if not measured:
        return None
    return {
        "per_fold": [{"fold": r["fold"], **r[KEY]} for r in measured],
        "test_flag_rate": mean_ci([r[KEY]["test_flag_rate"] for r in measured]),
    }


def ood_rows(summary: dict[str, Any]) -> list[str]:
    """A Markdown table: each fold's threshold and flag rates, then the mean with its interval."""
    rate = summary["test_flag_rate"]
    low, high = rate["low"], rate["high"]
    interval = f" [{100 * low:.2f}, {100 * high:.2f}]" if low is not None and high is not None else ""
    return [
        "| fold | threshold | validation flagged | test images | test flagged | of them by the stain gate |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {f['fold']} | {f['threshold']:.3f} | {100 * f['validation_flag_rate']:.2f}% | {f['n_test']} | "
          f"{100 * f['test_flag_rate']:.2f}% | {100 * f['test_stain_gated']:.2f}% |" for f in summary["per_fold"]),
        "",
        f"- in-distribution test images flagged, mean over {rate['n']} folds: "
        f"{100 * rate['mean']:.2f}%{interval}; highest fold {100 * rate['max']:.2f}% (target at most 2%)",
    ]
