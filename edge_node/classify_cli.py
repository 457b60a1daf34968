"""One-off classification of files and folders, printed as the original classifier scripts did."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edge_node.inference import OpenVinoClassifier
from edge_node.sources.decode import ImageRejected, decode_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_TOKEN_SPLIT = re.compile(r"[-_. ]+")


def ground_truth(path: Path, classes: Sequence[str]) -> str | None:
    """The class the parent folder or the file name names (`WBC-Malignant-Pre-741.jpg` is Pre), else None."""
    by_lower = {name.lower(): name for name in classes}
    if (folder := by_lower.get(path.parent.name.lower())) is not None:
        return folder
    found = {by_lower[token.lower()] for token in _TOKEN_SPLIT.split(path.stem) if token.lower() in by_lower}
    return found.pop() if len(found) == 1 else None


def expand(targets: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders walked (sorted) for image files."""
    for target in targets:
        if target.is_dir():
            yield from sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield target


@dataclass
class Summary:
    """Totals over one classify run."""

    count: int = 0
    refused: int = 0
    with_truth: int = 0
    correct: int = 0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float | None:
        """Share right among images whose ground truth is known."""
        return self.correct / self.with_truth if self.with_truth else None


def classify_paths(
    classifier: OpenVinoClassifier, targets: Sequence[Path], max_pixels: int, out: TextIO, err: TextIO
) -> Summary:
    """Classify each image, print its lines, and return the totals (printed last)."""
    summary = Summary()
    started = time.perf_counter()
    for path in expand(targets):
        image_started = time.perf_counter()
        try:
            rgb = decode_image(path.read_bytes(), max_pixels)
        except (ImageRejected, OSError) as exc:
            summary.refused += 1
            print(f"{path}: refused: {getattr(exc, 'strerror', None) or exc}", file=err)
            continue
        prediction = classifier.classify(rgb)
        elapsed_ms = (time.perf_counter() - image_started) * 1000.0
        summary.count += 1
        truth = ground_truth(path, classifier.classes)
        probabilities = "  ".join(f"{name} {p:.4f}" for name, p in prediction.probabilities.items())
        verdict = ""
        if truth is not None:
            summary.with_truth += 1
            right = truth == prediction.label
            summary.correct += right
            verdict = f"  truth {truth}  {'RIGHT' if right else 'WRONG'}"
        uncertain = " (uncertain)" if prediction.uncertain else ""
        print(f"{path}", file=out)
        print(f"  probabilities: {probabilities}", file=out)
        print(
            f"  label {prediction.label}{uncertain}  confidence {prediction.confidence:.4f}{verdict}"
            f"  time {elapsed_ms:.1f} ms",
            file=out,
        )
    summary.seconds = time.perf_counter() - started
    accuracy = "n/a (no ground truth)" if summary.accuracy is None else f"{summary.accuracy:.2%}"
    print(
        f"summary: {summary.count} classified, {summary.refused} refused, "
        f"accuracy {accuracy} ({summary.correct}/{summary.with_truth}), total time {summary.seconds:.2f} s",
        file=out,
    )
    return summary
