"""One-off classification of files and folders, printed as the original classifier scripts did, or as JSON lines."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contracts.specimens import FieldOfView, SpecimenRule, aggregate
from edge_node.inference import Classifier, Prediction
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
    """Files as given; folders walked (sorted) for files with an image suffix (others are skipped)."""
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
    uncertain: int = 0
    out_of_distribution: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    fields: list[FieldOfView] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        """Share right among images with a known ground truth that were not flagged out of distribution."""
        return self.correct / self.with_truth if self.with_truth else None

    def add(self, prediction: Prediction, truth: str | None) -> bool | None:
        """Count one result; returns whether it matched the ground truth (None when unknown or abstained)."""
        self.count += 1
        self.uncertain += prediction.uncertain
        self.fields.append(FieldOfView(
            prediction.label, prediction.confidence, prediction.probabilities, prediction.uncertain,
            prediction.out_of_distribution,
        ))
        if prediction.out_of_distribution:
            self.out_of_distribution += 1
            return None
        self.labels[prediction.label] += 1
        if truth is None:
            return None
        self.with_truth += 1
        self.correct += truth == prediction.label
        return truth == prediction.label

    def as_json(self, classifier: Classifier) -> dict[str, Any]:
        """The summary object printed last by --json."""
        return {
            "summary": True, "classified": self.count, "errors": self.refused, "labels": dict(sorted(self.labels.items())),
            "uncertain": self.uncertain, "out_of_distribution": self.out_of_distribution, "accuracy": self.accuracy,
            "model_version": classifier.model_version, "runtime": classifier.runtime, "device": classifier.device,
            "precision": classifier.precision, "seconds": round(self.seconds, 3),
        }


def _read(path: Path, max_pixels: int) -> Any:
    """Decoded pixels of one file, or raise ImageRejected / OSError with a readable reason."""
    if not path.exists():
        raise OSError(f"no such file or directory")
    if not path.is_file():
        raise OSError("not a regular file")
    return decode_image(path.read_bytes(), max_pixels)


def result_json(path: Path, prediction: Prediction, specimen_id: str | None = None) -> dict[str, Any]:
    """One image's --json object."""
    return {
        "file": str(path), **({"specimen_id": specimen_id} if specimen_id else {}), "label": prediction.label, "confidence": round(prediction.confidence, 6),
        "probabilities": {k: round(v, 6) for k, v in prediction.probabilities.items()},
        "uncertain": prediction.uncertain, "out_of_distribution": prediction.out_of_distribution,
        "ood_score": prediction.ood_score, "verdict": prediction.verdict,
    }


def classify_paths(
    classifier: Classifier,
    targets: Sequence[Path],
    max_pixels: int,
    out: TextIO,
    err: TextIO,
    *,
    as_json: bool = False,
    specimen_id: str | None = None,
    rule: SpecimenRule | None = None,
) -> Summary:
    """Classify each image, print its lines (or one JSON object), and return the totals (printed last)."""
    summary = Summary()
    started = time.perf_counter()
    for path in expand(targets):
        image_started = time.perf_counter()
        try:
            rgb = _read(path, max_pixels)
        except (ImageRejected, OSError) as exc:
            summary.refused += 1
            reason = getattr(exc, "strerror", None) or str(exc)
            print(f"{path}: refused: {reason}", file=err)
            if as_json:
                print(json.dumps({"file": str(path), "error": reason}), file=out)
            continue
        prediction = classifier.classify(rgb)
        elapsed_ms = (time.perf_counter() - image_started) * 1000.0
        truth = ground_truth(path, classifier.classes)
        right = summary.add(prediction, truth)
        if as_json:
            print(json.dumps(result_json(path, prediction, specimen_id)), file=out)
        else:
            _print_human(path, prediction, truth, right, elapsed_ms, out)
    summary.seconds = time.perf_counter() - started
    specimen = aggregate(summary.fields, rule or SpecimenRule()).as_dict() if specimen_id else None
    if as_json:
        extra = {"specimen_id": specimen_id, "specimen": specimen} if specimen_id else {}
        print(json.dumps(summary.as_json(classifier) | extra), file=out)
        return summary
    if specimen is not None:
        print(
            f"specimen {specimen_id}: {specimen['verdict']} ({specimen['usable']} usable of {specimen['fields']} fields, "
            f"{specimen['malignant']} confidently malignant, {specimen['uncertain']} uncertain, "
            f"{specimen['out_of_distribution']} out of distribution; research use only, not a diagnosis)",
            file=out,
        )
    accuracy = "n/a (no ground truth)" if summary.accuracy is None else f"{summary.accuracy:.2%}"
    print(
        f"summary: {summary.count} classified, {summary.refused} refused, "
        f"accuracy {accuracy} ({summary.correct}/{summary.with_truth}), "
        f"{summary.out_of_distribution} need review (out of distribution), total time {summary.seconds:.2f} s",
        file=out,
    )
    return summary


def _print_human(
    path: Path, prediction: Prediction, truth: str | None, right: bool | None, elapsed_ms: float, out: TextIO
) -> None:
    probabilities = "  ".join(f"{name} {p:.4f}" for name, p in prediction.probabilities.items())
    print(f"{path}", file=out)
    print(f"  probabilities: {probabilities}", file=out)
    if prediction.out_of_distribution:
        score = "n/a" if prediction.ood_score is None else f"{prediction.ood_score:.4g}"
        print(f"  {prediction.verdict}  (ood score {score})  time {elapsed_ms:.1f} ms", file=out)
        return
    verdict = f"  truth {truth}  {'RIGHT' if right else 'WRONG'}" if truth is not None else ""
    uncertain = " (uncertain)" if prediction.uncertain else ""
    print(
        f"  label {prediction.label}{uncertain}  confidence {prediction.confidence:.4f}{verdict}"
        f"  time {elapsed_ms:.1f} ms",
        file=out,
    )
