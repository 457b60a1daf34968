"""Assessment of a model on its held-out images (with the colour baseline and stain shifts) and package evaluation."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.model_package import Manifest, PackageError, unpack_package
from trainer import report as R
from trainer.baseline import ColourBaseline
from trainer.data import ScannedDataset, scan_dataset
from trainer.errors import TrainerError
from trainer.metrics import classification_report
from trainer.runtimes import openvino_runner
from trainer.robustness import robustness_table
from trainer.split import SplitIndex

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


def assess(
    predict: Predict,
    dataset: ScannedDataset,
    index: SplitIndex,
    out_dir: Path,
    title: str,
    seed: int = 0,
    history: dict[str, list[float]] | None = None,
    extra_sections: list[tuple[str, list[str]]] | None = None,
    card: Callable[[dict[str, Any]], list[tuple[str, list[str]]]] | None = None,
) -> dict[str, Any]:
    """Test-split metrics, colour baseline, robustness table, plots and a Markdown report in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, classes = dataset.labels, dataset.classes
    train, test = index.split["train"], index.split["test"]
    test_images, test_labels = dataset.images[test], labels[test]
    probs = predict(test_images)
    cnn = classification_report(test_labels, probs, classes)
    baseline = ColourBaseline(seed).fit(dataset.images[train], labels[train])
    colour = classification_report(test_labels, baseline.predict_proba(test_images), classes)
    table = robustness_table(test_images, test_labels, {"CNN": predict, "colour baseline": baseline.predict_proba})
    R.plot_confusion(cnn["confusion_matrix"], classes, "CNN, held-out images", out_dir / "confusion_cnn.png")
    R.plot_confusion(colour["confusion_matrix"], classes, "colour baseline", out_dir / "confusion_baseline.png")
    R.plot_robustness(table, out_dir / "robustness.png")
    R.plot_reliability(probs, test_labels, out_dir / "reliability.png")
    if history:
        R.plot_history(history, out_dir / "history.png")
    result = {"test": cnn, "colour_baseline": colour, "robustness": table, "split_sizes": {k: len(v) for k, v in index.split.items()}}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    summary = [
        f"- held-out images: {cnn['n_images']} (blocks of consecutive file numbers never seen in training)",
        f"- CNN accuracy: {100 * cnn['accuracy']:.2f}%, macro recall {100 * cnn['macro_recall']:.2f}%, ECE {cnn['ece']:.4f}",
        f"- colour-only baseline accuracy: {100 * colour['accuracy']:.2f}%",
        f"- CNN ahead of the baseline under every shift: {all(v['CNN'] > v['colour baseline'] for k, v in table.items() if k != 'clean')}",
    ]
    sections = [
        ("Summary", summary),
        ("CNN per class", R.metrics_table(cnn) + ["", "![confusion](confusion_cnn.png) ![reliability](reliability.png)"]),
        ("Colour-only baseline per class", R.metrics_table(colour) + ["", "![confusion](confusion_baseline.png)"]),
        ("Robustness (accuracy under shifts of the held-out images)", R.robustness_rows(table) + ["", "![robustness](robustness.png)"]),
    ]
    if history:
        sections.append(("Training", ["![history](history.png)"]))
    front = card(result) if card else []
    R.write_markdown(out_dir / "report.md", title, front + sections + (extra_sections or []))
    return result


def _labels_for(dataset: ScannedDataset, manifest: Manifest) -> np.ndarray:
    """Map the dataset's folder names onto the package's class order."""
    unknown = sorted(set(dataset.classes) - set(manifest.classes))
    if unknown:
        raise TrainerError(f"class folders {unknown} are not classes of the package ({', '.join(manifest.classes)})")
    lookup = {name: i for i, name in enumerate(manifest.classes)}
    return np.array([lookup[r.label] for r in dataset.records], dtype=np.int64)


def evaluate_package(
    package: Path,
    data_dir: Path,
    trusted_keys: Sequence[Ed25519PublicKey],
    select: Callable[[ScannedDataset], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Verify and unpack a package, then classify every image through the OpenVINO runtime."""
    if not package.is_file():
        raise TrainerError(f"package not found: {package}")
    with tempfile.TemporaryDirectory(prefix="trainer-eval-") as tmp:
        try:
            manifest = unpack_package(package, Path(tmp) / "pkg", trusted_keys)
        except PackageError as exc:
            raise TrainerError(f"package {package} refused: {exc}") from None
        size = manifest.input.shape[1]
        dataset = scan_dataset(data_dir, image_size=size, min_classes=1)
        labels = _labels_for(dataset, manifest)
        chosen = select(dataset) if select else np.arange(len(labels))
        infer = openvino_runner(Path(tmp) / "pkg" / manifest.model_xml, "f32")
        start = time.perf_counter()
        raw = infer(dataset.images[chosen])
        ms = (time.perf_counter() - start) * 1000 / max(len(chosen), 1)
    result = classification_report(labels[chosen], raw.probabilities, list(manifest.classes))
    if manifest.ood is not None and raw.ood_scores is not None:
        flagged = raw.ood_scores > manifest.ood.threshold
        result["out_of_distribution"] = {"flagged": int(flagged.sum()), "share": float(flagged.mean()) if len(flagged) else 0.0,
                                         "threshold": manifest.ood.threshold}
    result["ms_per_image"] = ms
    result["package"] = {"name": manifest.name, "version": manifest.version}
    result["skipped"] = [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped]
    return result
