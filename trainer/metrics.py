"""Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix, calibration."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by count."""
    if len(labels) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix with true classes as rows and predictions as columns."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classification_report(
    labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Accuracy, macro recall, per-class scores, confusion matrix and ECE as plain JSON types."""
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    matrix = confusion(labels, predicted, len(classes))
    per_class: dict[str, dict[str, float | int]] = {}
    recalls = []
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        support = int(matrix[i].sum())
        predicted_count = int(matrix[:, i].sum())
        precision = tp / predicted_count if predicted_count else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            recalls.append(recall)
    n = len(labels)
    return {
        "accuracy": float((predicted == labels).mean()) if n else 0.0,
        "macro_recall": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "labels": list(classes),
        "n_images": n,
        "ece": expected_calibration_error(probs, labels) if n else 0.0,
    }
