"""The package self-test: one implementation for the trainer (before it signs) and the node (before it serves).

A package records f32 reference outputs for fixed inputs chosen with a wide top-1 margin, and a
tolerance per precision class. Any legitimate device reproduces the labels and stays within the
tolerance of its precision; a broken or substituted model does not. Needs numpy: only the trainer and
the edge node import this module.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.model_package import Manifest, Precision

logger = logging.getLogger(__name__)

MAX_SELFTEST_SAMPLES = 256


class SelfTestError(RuntimeError):
    """A model that does not reproduce its package's self-test outputs, or a malformed self-test set."""


@dataclass(frozen=True)
class RawOutputs:
    """What a runtime returns for a batch: probabilities and, when the model has a detector, OOD scores."""

    probabilities: np.ndarray
    ood_scores: np.ndarray | None = None


@dataclass(frozen=True)
class SelfTestSet:
    """The package's fixed inputs with their f32 reference outputs."""

    inputs: np.ndarray
    probabilities: np.ndarray
    ood_scores: np.ndarray | None


@dataclass(frozen=True)
class SelfTestResult:
    """How far a runtime's outputs were from the references."""

    precision: Precision
    max_abs_diff: float
    tolerance: float
    label_disagreements: int
    ood_max_rel_diff: float | None
    n_samples: int


def load_selftest_set(path: Path, manifest: Manifest) -> SelfTestSet:
    """Read and validate `inputs`, `outputs` (and `ood_scores` when the model has a detector)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "inputs" not in data.files or "outputs" not in data.files:
                raise SelfTestError(f"self-test file has {sorted(data.files)}, needs 'inputs' and 'outputs'")
            inputs, outputs = data["inputs"], data["outputs"]
            ood = data["ood_scores"] if "ood_scores" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SelfTestError(f"self-test file {Path(path).name} cannot be read: {exc}") from None
    n_classes = len(manifest.classes)
    if inputs.dtype != np.uint8 or inputs.ndim != 4:
        raise SelfTestError(f"self-test inputs must be uint8 N×H×W×C, got {inputs.dtype} {inputs.shape}")
    if not 0 < len(inputs) <= MAX_SELFTEST_SAMPLES:
        raise SelfTestError(f"self-test has {len(inputs)} samples; 1 to {MAX_SELFTEST_SAMPLES} are allowed")
    if outputs.dtype != np.float32 or outputs.shape != (len(inputs), n_classes):
        raise SelfTestError(
            f"self-test outputs must be float32 {(len(inputs), n_classes)}, got {outputs.dtype} {outputs.shape}"
        )
    if manifest.ood is not None:
        if ood is None or ood.dtype != np.float32 or ood.shape != (len(inputs),):
            raise SelfTestError("the model has an OOD detector but the self-test has no float32 ood_scores per input")
    return SelfTestSet(inputs, outputs, ood if manifest.ood is not None else None)


def top1_margins(probabilities: np.ndarray) -> np.ndarray:
    """Difference between the largest and second-largest probability of each row."""
    ordered = np.sort(probabilities, axis=1)
    return ordered[:, -1] - ordered[:, -2]


def compare(reference: SelfTestSet, actual: RawOutputs, manifest: Manifest, precision: Precision) -> SelfTestResult:
    """Measure actual outputs against the references; raise SelfTestError when they are out of tolerance."""
    probs = np.asarray(actual.probabilities, dtype=np.float32)
    expected = reference.probabilities
    if probs.shape != expected.shape:
        raise SelfTestError(f"model returned shape {probs.shape}, the self-test expects {expected.shape}")
    if not np.all(np.isfinite(probs)):
        raise SelfTestError("model returned non-finite outputs on the self-test set")
    tolerance = manifest.selftest.tolerance(precision)
    worst = float(np.max(np.abs(probs - expected)))
    disagreements = int(np.sum(np.argmax(probs, axis=1) != np.argmax(expected, axis=1)))
    ood_rel = _ood_difference(reference, actual, manifest)
    result = SelfTestResult(precision, worst, tolerance, disagreements, ood_rel, len(expected))
    if worst > tolerance:
        raise SelfTestError(f"outputs differ from the package's by up to {worst:.3g} (allowed {tolerance:g} at {precision})")
    if disagreements:
        raise SelfTestError(f"{disagreements} of {len(expected)} self-test labels differ from the package's")
    rtol = manifest.selftest.ood_rtol or 0.05
    if ood_rel is not None and ood_rel > rtol:
        raise SelfTestError(f"OOD scores differ from the package's by up to {ood_rel:.1%} (allowed {rtol:.1%})")
    return result


def _ood_difference(reference: SelfTestSet, actual: RawOutputs, manifest: Manifest) -> float | None:
    if manifest.ood is None or reference.ood_scores is None:
        return None
    if actual.ood_scores is None:
        raise SelfTestError("the model has an OOD detector but the runtime returned no OOD scores")
    scores = np.asarray(actual.ood_scores, dtype=np.float32).reshape(-1)
    if scores.shape != reference.ood_scores.shape or not np.all(np.isfinite(scores)):
        raise SelfTestError(f"OOD scores have shape {scores.shape} or are not finite")
    # Relative to the threshold's scale, so scores near zero do not inflate the ratio.
    scale = np.maximum(np.abs(reference.ood_scores), manifest.ood.threshold)
    return float(np.max(np.abs(scores - reference.ood_scores) / scale))


def run_selftest(
    infer: Callable[[np.ndarray], RawOutputs], package_dir: Path, manifest: Manifest, precision: Precision
) -> SelfTestResult:
    """Load the package's self-test set, run it through `infer`, and compare at `precision`."""
    reference = load_selftest_set(Path(package_dir) / manifest.selftest.file, manifest)
    try:
        actual = infer(reference.inputs)
    except (ValueError, RuntimeError) as exc:
        raise SelfTestError(f"self-test inference failed: {exc}") from None
    result = compare(reference, actual, manifest, precision)
    logger.info(
        "self-test passed for %s %s at %s: %d samples, max difference %.3g (allowed %g)",
        manifest.name, manifest.version, precision, result.n_samples, result.max_abs_diff, result.tolerance,
    )
    return result
