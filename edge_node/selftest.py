"""Reproduce a model package's self-test outputs before the model may serve."""

from __future__ import annotations

import logging
import zipfile
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edge_node.model_store import InstalledModel

logger = logging.getLogger(__name__)

MAX_SELFTEST_SAMPLES = 256


class SelfTestError(RuntimeError):
    """A model that does not reproduce its package's self-test outputs, or a malformed self-test set."""


class RawClassifier(Protocol):
    """What the self-test needs of a classifier: batched raw inference."""

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        """N inputs shaped like the manifest's input → (N, n_classes) probabilities."""
        ...


def load_selftest_set(model: InstalledModel) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate `inputs` and `outputs` from the package's self-test file."""
    path = model.path / model.manifest.selftest.file
    try:
        with np.load(path, allow_pickle=False) as data:
            if "inputs" not in data.files or "outputs" not in data.files:
                raise SelfTestError(f"self-test file has {sorted(data.files)}, needs 'inputs' and 'outputs'")
            inputs, outputs = data["inputs"], data["outputs"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SelfTestError(f"self-test file {path.name} cannot be read: {exc}") from None
    n_classes = len(model.manifest.classes)
    if inputs.dtype != np.uint8 or inputs.ndim != 4:
        raise SelfTestError(f"self-test inputs must be uint8 N×H×W×C, got {inputs.dtype} {inputs.shape}")
    if not 0 < len(inputs) <= MAX_SELFTEST_SAMPLES:
        raise SelfTestError(f"self-test has {len(inputs)} samples; 1 to {MAX_SELFTEST_SAMPLES} are allowed")
    if outputs.dtype != np.float32 or outputs.shape != (len(inputs), n_classes):
        raise SelfTestError(
            f"self-test outputs must be float32 {(len(inputs), n_classes)}, got {outputs.dtype} {outputs.shape}"
        )
    return inputs, outputs


def run_selftest(classifier: RawClassifier, model: InstalledModel) -> None:
    """Raise SelfTestError unless the classifier reproduces the package's outputs within atol, labels included."""
    inputs, expected = load_selftest_set(model)
    try:
        actual = np.asarray(classifier.infer_raw(inputs), dtype=np.float32)
    except (ValueError, RuntimeError) as exc:
        raise SelfTestError(f"self-test inference failed: {exc}") from None
    if actual.shape != expected.shape:
        raise SelfTestError(f"model returned shape {actual.shape}, the self-test expects {expected.shape}")
    if not np.all(np.isfinite(actual)):
        raise SelfTestError("model returned non-finite outputs on the self-test set")
    atol = model.manifest.selftest.atol
    worst = float(np.max(np.abs(actual - expected)))
    if worst > atol:
        raise SelfTestError(f"outputs differ from the package's by up to {worst:.3g} (allowed {atol:g})")
    disagreements = int(np.sum(np.argmax(actual, axis=1) != np.argmax(expected, axis=1)))
    if disagreements:
        raise SelfTestError(f"{disagreements} of {len(inputs)} self-test labels differ from the package's")
    logger.info(
        "self-test passed for %s %s: %d samples, max difference %.3g",
        model.manifest.name,
        model.manifest.version,
        len(inputs),
        worst,
    )
