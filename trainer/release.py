"""From a training run to a released package: export, agreement check, OpenVINO assessment, signing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from contracts.confs import TrainerConfs
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

MAX_PROBABILITY_DIFF = 0.02  # what an exported format may deviate from Keras, per probability


def _load_run(run_dir: Path) -> tuple[TrainerConfs, dict[str, Any]]:
    config = run_dir / "config.json"
    if not config.is_file() or not (run_dir / "model.keras").is_file():
        raise TrainerError(f"{run_dir} is not a training run (needs config.json and model.keras)")
    data = json.loads(config.read_text())
    return TrainerConfs.model_validate(data["trainer"]), data


def _dataset(confs: TrainerConfs):  # type: ignore[no-untyped-def]
    from trainer.data import scan_dataset
    from trainer.release_split import release_index

    dataset = scan_dataset(confs.data_dir, confs.image_size)
    return dataset, release_index(dataset, confs)


def export_run(run_dir: Path, confs_path: Path, int8: bool = False) -> dict[str, Any]:
    """Fit the OOD detector, write run_dir/export (IR, ONNX, TFLite) and check every format against Keras."""
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers for loading)
    from trainer.export import export_formats
    from trainer.ood import deployable, deployable_predict
    from trainer.ood_report import fit_detector
    from trainer.runtimes import litert_runner, onnx_runner, openvino_runner

    run_dir = run_dir.resolve()
    confs, _data = _load_run(run_dir)
    model = keras.models.load_model(run_dir / "model.keras")
    dataset, index = _dataset(confs)
    fit, ood_info = fit_detector(
        model, dataset, index, confs.ood_quantile, confs.seed, confs.ood_stain_quantile, confs.ood_threshold_margin
    )
    fit.save(run_dir / "ood.npz")
    final = deployable(model, fit)
    test = dataset.images[index.split["test"]]
    reference = deployable_predict(final, test)
    info: dict[str, Any] = {"ood": ood_info}
    for fp16 in (True, False):
        files = export_formats(final, run_dir / "export", confs.image_size, fp16=fp16)
        runners = {"openvino": openvino_runner(files["openvino"]), "onnxruntime": onnx_runner(files["onnx"]),
                   "litert": litert_runner(files["tflite"])}
        checks = {name: agreement(reference, run(test), fit.threshold) for name, run in runners.items()}
        info["formats_vs_keras"], info["ir_weights"] = checks, "fp16" if fp16 else "fp32"
        if all(c["labels_agree"] for c in checks.values()):
            break
        log.warning("a format disagrees with Keras with %s IR weights: %s", "fp16" if fp16 else "fp32", checks)
    (run_dir / "export.json").write_text(json.dumps(info, indent=2))
    bad = {name: c for name, c in info["formats_vs_keras"].items()
           if not c["labels_agree"] or c["max_abs_diff"] > MAX_PROBABILITY_DIFF}
    if bad:
        raise TrainerError(f"refusing to package: exported formats disagree with Keras on the held-out images: {bad}")
    if int8:
        log.warning("INT8 export is not part of the format-2 package; shipping %s weights", info["ir_weights"])
    log.info("export: %s", info["formats_vs_keras"])
    return {**info, "files": {k: str(v) for k, v in files.items()}, "threshold": fit.threshold}


def agreement(reference: tuple[Any, Any], actual: Any, threshold: float) -> dict[str, Any]:
    """Max abs probability difference, label agreement and OOD score difference against Keras.

    An image whose two most likely classes are within MAX_PROBABILITY_DIFF of each other in Keras has no label
    that a format allowed that deviation must reproduce: such a flip is counted, not held against the format.
    """
    import numpy as np

    probs, scores = reference
    flips = probs.argmax(1) != actual.probabilities.argmax(1)
    top_two = np.sort(probs, axis=1)[:, -2:] if probs.shape[-1] > 1 else np.zeros((len(probs), 2))
    tie = (top_two[:, 1] - top_two[:, 0]) < MAX_PROBABILITY_DIFF
    ood = actual.ood_scores if actual.ood_scores is not None else np.zeros_like(scores)
    scale = np.maximum(np.abs(scores), threshold)
    return {
        "max_abs_diff": float(np.abs(probs - actual.probabilities).max()) if len(probs) else 0.0,
        "labels_agree": not bool((flips & ~tie).any()), "n_disagree": int(flips.sum()),
        "n_disagree_on_ties": int((flips & tie).sum()), "n_images": len(probs),
        "ood_max_rel_diff": float((np.abs(ood - scores) / scale).max()) if len(probs) else 0.0,
        "ood_flags_differ": int(((ood > threshold) != (scores > threshold)).sum()),
    }


def package_run(
    run_dir: Path, confs_path: Path, name: str, version: str, out_dir: Path | None, int8: bool = False
) -> Path:
    """Export the run, assess the IR through OpenVINO and write the signed package plus its report."""
    from contracts.model_package import public_key_text
    from contracts.release_metrics import OodFigures, ReleaseMetrics
    from trainer.evaluate import assess
    from trainer.keys import ensure_signing_key
    from trainer.model_card import card_sections
    from trainer.ood_report import evaluate_ood, ood_lines
    from trainer.package import make_package, package_path
    from trainer.runtimes import openvino_runner
    from trainer.split import split_digest

    run_dir = run_dir.resolve()
    confs, data = _load_run(run_dir)
    export = export_run(run_dir, confs_path, int8=int8)
    files = {k: Path(v) for k, v in export["files"].items()}
    dataset, index = _dataset(confs)
    digest = split_digest(dataset, index)
    if digest != data.get("training_data_sha256"):
        raise TrainerError("the dataset or split differs from the one the run was trained on")
    target_dir = out_dir or Path(confs.package_dir)
    report_dir = target_dir / f"{name}-{version}"
    infer = openvino_runner(files["openvino"], "f32")
    history = json.loads((run_dir / "history.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").is_file() else {}
    ood_eval = evaluate_ood(infer, dataset, index, export["threshold"], confs.seed)
    if confs.final_fit:
        # The validation blocks set the threshold, so their own flag rate is the quantile by construction.
        ood_eval["in_distribution_test_flag_rate"] = export["ood"]["cross_calibrated_flag_rate"]
        ood_eval["in_distribution_measured_on"] = "validation blocks, each half at the threshold the other half sets"
    held_out = held_out_name(confs)
    cv = _cv_summary(run_dir, report_dir)
    metrics = assess(
        lambda b: infer(b).probabilities, dataset, index, report_dir,
        f"{name} {version}: OpenVINO IR (f32) on the {held_out}", confs.seed, history["history"],
        extra_sections=[
            ("Data", _data_lines(confs, index, digest)),
            ("Export and training", _export_lines(export, history, timing, confs.final_fit)),
            ("Out-of-distribution detection", ood_lines(export["ood"], ood_eval)),
        ],
        card=lambda m: card_sections(m, ood_eval, cv, held_out),
    )
    test = metrics["test"]
    manifest_metrics = ReleaseMetrics(
        split=held_out,
        test_accuracy=test["accuracy"],
        macro_recall=test["macro_recall"],
        per_class_recall={k: v["recall"] for k, v in test["per_class"].items()},
        confusion_matrix=test["confusion_matrix"],
        ece=test["ece"],
        n_test_images=test["n_images"],
        colour_baseline_accuracy=metrics["colour_baseline"]["accuracy"],
        robustness=metrics["robustness"],
        formats_vs_keras=export["formats_vs_keras"],
        ood=OodFigures(in_distribution_test_flag_rate=ood_eval["in_distribution_test_flag_rate"],
                       sets={k: v["flagged"] for k, v in ood_eval["sets"].items()}),
        cross_validation=_compact_cv(cv, confs),
        train_seconds=history["seconds"],
        epochs_run=len(history["history"].get("loss", [])),
    ).to_manifest()
    preprocessing = {
        "inside_model": True,
        "feed": "uint8 RGB NHWC, raw 0-255, resized to the input size",
        "scale_bar_mask": confs.mask_scale_bar,
        "grayscale": confs.grayscale,
        "internal_size": confs.internal_size,
        "standardize": "per image",
        "weights": export["ir_weights"],
        "architecture": {"model": confs.model, "width": confs.width, "residual": confs.residual,
                         "squeeze_excite": confs.squeeze_excite},
    }
    key = ensure_signing_key(Path(confs.signing_key))
    out = package_path(target_dir, name, version)
    gate = export["ood"].get("stain_gate")
    fitted_on = export["ood"]["fitted_on"] + (f"; stain gate at the {100 * gate['quantile']:g}% quantile of the clean training fields" if gate else "")
    ood_info = {"in_distribution_flag_rate": ood_eval["in_distribution_test_flag_rate"], "fitted_on": fitted_on,
                "method": "mahalanobis+stain" if gate else "mahalanobis"}
    manifest, measured = make_package(
        out, files, name=name, version=version, classes=dataset.classes, image_size=confs.image_size,
        preprocessing=preprocessing, training_data_sha256=digest, metrics=manifest_metrics, private_key=key,
        ood_threshold=export["threshold"], ood_info=ood_info,
    )
    (report_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    (report_dir / "selftest_deviations.json").write_text(json.dumps(measured, indent=2))
    log.info("signed with %s", public_key_text(key))
    return out


def held_out_name(confs: TrainerConfs) -> str:
    """What a release's figures are measured on."""
    if confs.final_fit:
        return "validation blocks of the final fit (never trained on; they set the OOD threshold)"
    return "block test split (read once for this release)"


def _cv_summary(run_dir: Path, report_dir: Path | None = None) -> dict[str, Any] | None:
    """The cross-validation summary the run points to (cv.json beside it or in runs/cv), copied into the report."""
    import shutil

    for candidate in (run_dir / "cv.json", run_dir.parent / "cv" / "cv.json"):
        if candidate.is_file():
            if report_dir is not None and candidate.with_name("cv.md").is_file():
                report_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(candidate.with_name("cv.md"), report_dir / "cv.md")
            return json.loads(candidate.read_text())
    return None


def _compact_cv(cv: dict[str, Any] | None, confs: TrainerConfs) -> dict[str, Any] | None:
    """The CV summary for the signed manifest: the OOD rule sweep without its full table."""
    from trainer import cv_ood, ood_sweep

    if not cv or not cv.get("ood_rule_sweep"):
        return cv
    return {**cv, "ood_rule_sweep": ood_sweep.compact(cv["ood_rule_sweep"], cv_ood.configured_rule(confs))}


def _data_lines(confs: TrainerConfs, index: Any, digest: str) -> list[str]:
    s = confs.split
    sizes = {k: len(v) for k, v in index.split.items() if not (confs.final_fit and k == "test")}
    final = (
        [f"- final fit: the train and test blocks train together ({sizes['train']} images, the last epoch kept); only the "
         f"validation blocks ({sizes['validation']}) stay out, for the OOD threshold and the figures below; "
         "cross-validation is the estimate of how the recipe does on unseen patients"]
        if confs.final_fit else []
    )
    return [
        f"- images from `{confs.data_dir}` (one folder per class); no image is stored in this report or the package",
        f"- {len(index.duplicates)} exact duplicates removed; {len(index.groups)} near-duplicate groups kept inside one split",
        f"- split by blocks of {s.block_size} consecutive file numbers per class (a stand-in for patients), seed {confs.seed}: "
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        *final,
        f"- training data sha256 (split, class, file hash lines): `{digest}`",
        ("- dataset: Aria M., Ghaderzadeh M., Bashash D., Abolghasemi H., Asadi F., Hosseini A., "
        '"Acute Lymphoblastic Leukemia (ALL) image dataset", Kaggle (2021), DOI 10.34740/KAGGLE/DSV/2175623; '
        "paper: Ghaderzadeh M. et al., Int J Intell Syst 37(8):5113-5133 (2022), doi:10.1002/int.22753. "
        "Its license was not verified; check the Kaggle page before redistributing derived work."),
    ]


def _ties(check: dict[str, Any]) -> str:
    ties = check.get("n_disagree_on_ties", 0)
    return f", {ties} of them near-ties: Keras's top two within {MAX_PROBABILITY_DIFF}" if ties else ""


def _export_lines(export: dict[str, Any], history: dict[str, Any], timing: dict[str, Any], final_fit: bool) -> list[str]:
    kept = "last epoch kept: a final fit" if final_fit else "best epoch"
    lines = [
        f"- every format against Keras on the held-out images (IR weights {export['ir_weights']}):",
        "",
        "| runtime | max abs difference | labels agree | OOD score max rel. difference | OOD flags differ |",
        "|---|---:|---|---:|---:|",
    ]
    for name, c in export["formats_vs_keras"].items():
        lines.append(
            f"| {name} | {c['max_abs_diff']:.2e} | {c['labels_agree']} ({c['n_disagree']} of {c['n_images']} differ"
            f"{_ties(c)}) "
            f"| {c['ood_max_rel_diff']:.2%} | {c['ood_flags_differ']} |"
        )
    lines += [
        "",
        (f"- training: {len(history['history'].get('loss', []))} epochs in {history['seconds'] / 60:.1f} min "
         f"({kept} {history['best_epoch']}, stopped by {history['stopped_by']})"),
    ]
    if timing:
        lines.append(f"- whole `train` command (decode, split, train, assess): {timing['total_seconds'] / 60:.1f} min")
    return lines
