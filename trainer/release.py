"""From a training run to a released package: export, agreement check, OpenVINO assessment, signing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from contracts.confs import TrainerConfs
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


def _load_run(run_dir: Path) -> tuple[TrainerConfs, dict[str, Any]]:
    config = run_dir / "config.json"
    if not config.is_file() or not (run_dir / "model.keras").is_file():
        raise TrainerError(f"{run_dir} is not a training run (needs config.json and model.keras)")
    data = json.loads(config.read_text())
    return TrainerConfs.model_validate(data["trainer"]), data


def _dataset(confs: TrainerConfs):  # type: ignore[no-untyped-def]
    from trainer.data import scan_dataset
    from trainer.split import block_split

    dataset = scan_dataset(confs.data_dir, confs.image_size)
    s = confs.split
    return dataset, block_split(dataset, s.validation_fraction, s.test_fraction, s.block_size, confs.seed)


def export_run(run_dir: Path, confs_path: Path, int8: bool = False) -> dict[str, Any]:
    """Write run_dir/ir (FP16) and maybe run_dir/ir_int8; return the agreement and INT8 figures."""
    import keras

    import trainer.layers  # noqa: F401  (registers the custom layers for loading)
    from trainer.export import (
        agreement,
        keras_predict,
        quantize_int8,
        save_ir,
        to_openvino,
    )
    from trainer.ov_classifier import OpenVinoClassifier

    run_dir = run_dir.resolve()
    confs, _data = _load_run(run_dir)
    model = keras.models.load_model(run_dir / "model.keras")
    dataset, index = _dataset(confs)
    test = dataset.images[index.split["test"]]
    ov_model = to_openvino(model, confs.image_size)
    save_ir(ov_model, run_dir / "ir", fp16=True)
    classifier = OpenVinoClassifier(run_dir / "ir" / "model.xml", hint="THROUGHPUT")
    info: dict[str, Any] = {"fp16_vs_keras": agreement(keras_predict(model, test), classifier.predict(test))}
    if int8:
        val = index.split["validation"]
        val_images, val_labels = dataset.images[val], dataset.labels[val]

        def val_accuracy(m) -> float:  # type: ignore[no-untyped-def]
            import openvino as ov

            compiled = ov.Core().compile_model(m, "CPU")
            preds = [int(compiled(img[None])[0].argmax()) for img in val_images]
            return float((val_labels == preds).mean())

        calibration = dataset.images[index.split["train"][:: max(len(index.split["train"]) // 300, 1)]]
        quantized, info["int8"] = quantize_int8(ov_model, calibration, val_accuracy, val_accuracy(ov_model))
        if quantized is not None:
            save_ir(quantized, run_dir / "ir_int8", fp16=False)
    (run_dir / "export.json").write_text(json.dumps(info, indent=2))
    log.info("export: %s", info)
    return info


def package_run(
    run_dir: Path, confs_path: Path, name: str, version: str, out_dir: Path | None, int8: bool = False
) -> Path:
    """Export the run, assess the IR through OpenVINO and write the signed package plus its report."""
    from contracts.model_package import public_key_text
    from trainer.evaluate import assess
    from trainer.keys import ensure_signing_key
    from trainer.ov_classifier import OpenVinoClassifier
    from trainer.package import make_package, package_path
    from trainer.split import split_digest

    run_dir = run_dir.resolve()
    confs, data = _load_run(run_dir)
    export = export_run(run_dir, confs_path, int8=True)
    use_int8 = int8 and export.get("int8", {}).get("status") == "kept"
    ir_dir = run_dir / ("ir_int8" if use_int8 else "ir")
    dataset, index = _dataset(confs)
    digest = split_digest(dataset, index)
    if digest != data.get("training_data_sha256"):
        raise TrainerError("the dataset or split differs from the one the run was trained on")
    target_dir = out_dir or Path(confs.package_dir)
    report_dir = target_dir / f"{name}-{version}"
    classifier = OpenVinoClassifier(ir_dir / "model.xml", hint="THROUGHPUT")
    history = json.loads((run_dir / "history.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").is_file() else {}
    metrics = assess(
        classifier.predict, dataset, index, report_dir, f"{name} {version}: OpenVINO IR on the block test split",
        confs.seed, history["history"],
        extra_sections=[
            ("Data", _data_lines(confs, index, digest)),
            ("Export and training", _export_lines(export, history, timing, use_int8)),
        ],
    )
    test = metrics["test"]
    manifest_metrics = {
        "split": "block test split",
        "test_accuracy": test["accuracy"],
        "macro_recall": test["macro_recall"],
        "per_class_recall": {k: v["recall"] for k, v in test["per_class"].items()},
        "ece": test["ece"],
        "n_test_images": test["n_images"],
        "colour_baseline_accuracy": metrics["colour_baseline"]["accuracy"],
        "robustness": metrics["robustness"],
        "openvino_vs_keras_max_abs_diff": export["fp16_vs_keras"]["max_abs_diff"],
        "train_seconds": history["seconds"],
        "epochs_run": len(history["history"].get("loss", [])),
        "int8": export.get("int8", {}).get("status", "not tried"),
    }
    preprocessing = {
        "inside_model": True,
        "feed": "uint8 RGB NHWC, raw 0-255, resized to the input size",
        "scale_bar_mask": confs.mask_scale_bar,
        "grayscale": confs.grayscale,
        "internal_size": confs.internal_size,
        "standardize": "per image",
        "weights": "int8" if use_int8 else "fp16",
        "architecture": {"model": confs.model, "width": confs.width},
    }
    key = ensure_signing_key(Path(confs.signing_key))
    out = package_path(target_dir, name, version)
    manifest = make_package(
        out, ir_dir, name=name, version=version, classes=dataset.classes, image_size=confs.image_size,
        preprocessing=preprocessing, training_data_sha256=digest, metrics=manifest_metrics, private_key=key,
    )
    (report_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    log.info("signed with %s", public_key_text(key))
    return out


def _data_lines(confs: TrainerConfs, index: Any, digest: str) -> list[str]:
    s = confs.split
    return [
        f"- images from `{confs.data_dir}` (one folder per class); no image is stored in this report or the package",
        f"- {len(index.duplicates)} exact duplicates removed; {len(index.groups)} near-duplicate groups kept inside one split",
        f"- split by blocks of {s.block_size} consecutive file numbers per class (a stand-in for patients), seed {confs.seed}: "
        + ", ".join(f"{k} {len(v)}" for k, v in index.split.items()),
        f"- training data sha256 (split, class, file hash lines): `{digest}`",
        ("- dataset: Aria M., Ghaderzadeh M., Bashash D., Abolghasemi H., Asadi F., Hosseini A., "
        '"Acute Lymphoblastic Leukemia (ALL) image dataset", Kaggle (2021), DOI 10.34740/KAGGLE/DSV/2175623; '
        "paper: Ghaderzadeh M. et al., Int J Intell Syst 37(8):5113-5133 (2022), doi:10.1002/int.22753. "
        "Its license was not verified; check the Kaggle page before redistributing derived work."),
    ]


def _export_lines(export: dict[str, Any], history: dict[str, Any], timing: dict[str, Any], int8: bool) -> list[str]:
    agree = export["fp16_vs_keras"]
    lines = [
        (f"- OpenVINO FP16 IR vs Keras on the test split: max abs difference {agree['max_abs_diff']:.2e}, "
        f"labels agree: {agree['labels_agree']} ({agree['n_disagree']} of {agree['n_images']} differ)"),
        f"- INT8 (NNCF): {json.dumps(export.get('int8', 'not tried'))}; shipped weights: {'INT8' if int8 else 'FP16'}",
        (f"- training: {len(history['history'].get('loss', []))} epochs in {history['seconds'] / 60:.1f} min "
        f"(best epoch {history['best_epoch']}, stopped by {history['stopped_by']})"),
    ]
    if timing:
        lines.append(f"- whole `train` command (decode, split, train, assess): {timing['total_seconds'] / 60:.1f} min")
    return lines
