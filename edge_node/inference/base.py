"""The one Classifier protocol every runtime implements, with the pre- and post-processing they share."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from contracts.model_package import Manifest, Precision
from contracts.selftest import RawOutputs

RuntimeName = Literal["openvino", "onnxruntime", "litert"]
RequestedPrecision = Literal["f32", "bf16", "f16", "auto"]
OOD_VERDICT = "needs review: outside what this model was trained on"
_SCALES = {"raw 0-255": 1.0, "0-1": 1.0 / 255.0}


class ModelMismatchError(ValueError):
    """The model file does not match what its manifest promises, or cannot run on the chosen device."""


class UnsupportedPrecision(ModelMismatchError):
    """The runtime cannot run the model at the requested precision on the configured device."""


class RuntimeUnavailable(RuntimeError):
    """The runtime (or one of its execution providers) is not installed on this node."""


@dataclass(frozen=True)
class Prediction:
    """One classification result."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool
    inference_ms: float
    model_version: str
    out_of_distribution: bool = False
    ood_score: float | None = None

    @property
    def verdict(self) -> str:
        """What a reader should take from it: the label, or 'needs review' for inputs unlike the training data."""
        if self.out_of_distribution:
            return OOD_VERDICT
        return self.label + (" (uncertain)" if self.uncertain else "")


@runtime_checkable
class Classifier(Protocol):
    """A loaded model on one runtime; safe to call from several threads."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def model_version(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def runtime(self) -> RuntimeName: ...

    @property
    def device(self) -> str: ...

    @property
    def precision(self) -> Precision: ...

    @property
    def confidence_threshold(self) -> float: ...

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """N uint8 RGB images of the model's input size (N×H×W×3) → probabilities and OOD scores."""
        ...

    def classify(self, rgb: np.ndarray) -> Prediction:
        """Classify one RGB uint8 image of any size."""
        ...


def input_size(manifest: Manifest) -> tuple[int, int]:
    """(height, width) of the model input; refuses specs no runtime here can feed."""
    spec = manifest.input
    if len(spec.shape) != 4:
        raise ModelMismatchError(f"manifest input shape {spec.shape} is not a 4-D image batch")
    if spec.scale not in _SCALES:
        raise ModelMismatchError(f"manifest input scale {spec.scale!r} is not one of {sorted(_SCALES)}")
    channels = spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]
    if channels != 3:
        raise ModelMismatchError(f"manifest input has {channels} channels; 3 are required")
    height, width = (spec.shape[1], spec.shape[2]) if spec.layout == "NHWC" else (spec.shape[2], spec.shape[3])
    if height <= 0 or width <= 0:
        raise ModelMismatchError(f"manifest input shape {spec.shape} has no fixed height and width")
    return height, width


class ClassifierBase(ABC):
    """Shared parts of every runtime's classifier: input checks, resizing, the uncertain and OOD flags."""

    runtime: RuntimeName

    def __init__(self, manifest: Manifest, confidence_threshold: float) -> None:
        self.manifest = manifest
        self.model_version = manifest.version
        self.classes: tuple[str, ...] = tuple(manifest.classes)
        self.confidence_threshold = confidence_threshold
        self._height, self._width = input_size(manifest)
        self.device = "CPU"
        self.precision: Precision = "f32"

    @abstractmethod
    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """N uint8 RGB images of the model's input size (N×H×W×3) → probabilities and OOD scores."""

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as the model's own input tensor (layout, colour order, dtype, scale)."""
        expected = (self._height, self._width, 3)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"batch shape {batch.shape} does not match the model input (N, {expected})")
        spec = self.manifest.input
        tensor = batch[..., ::-1] if spec.color_order == "BGR" else batch
        if spec.layout == "NCHW":
            tensor = tensor.transpose(0, 3, 1, 2)
        if spec.dtype == "float32":
            tensor = tensor.astype(np.float32) * np.float32(_SCALES[spec.scale])
        else:
            tensor = tensor.astype(np.uint8, copy=False)
        return np.ascontiguousarray(tensor)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 RGB image of any size as a 1×H×W×3 batch of the model's input size."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} {rgb.dtype}")
        if rgb.shape[:2] != (self._height, self._width):
            shrinking = rgb.shape[0] > self._height or rgb.shape[1] > self._width
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (self._width, self._height), interpolation=interpolation)
        return np.ascontiguousarray(rgb[np.newaxis])

    def classify(self, rgb: np.ndarray) -> Prediction:
        """Classify one RGB uint8 image of any size."""
        started = time.perf_counter()
        raw = self.infer_raw(self.preprocess(rgb))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        score = None if raw.ood_scores is None else float(np.asarray(raw.ood_scores).reshape(-1)[0])
        return make_prediction(self, np.asarray(raw.probabilities)[0], score, elapsed_ms)


def make_prediction(classifier: Classifier, probabilities: np.ndarray, ood_score: float | None, ms: float) -> Prediction:
    """A Prediction from one row of probabilities and its OOD score, flagged by the manifest's thresholds."""
    clipped = np.clip(np.nan_to_num(np.asarray(probabilities, dtype=np.float64), nan=0.0), 0.0, 1.0)
    best = int(np.argmax(clipped))
    confidence = float(clipped[best])
    detector = classifier.manifest.ood
    out_of_distribution, score = False, None
    if detector is not None:
        if ood_score is None or not math.isfinite(ood_score):
            out_of_distribution = True  # a detector that cannot score the input must not let it pass as known
        else:
            score = max(0.0, ood_score)
            out_of_distribution = score > detector.threshold
    return Prediction(
        label=classifier.classes[best],
        confidence=confidence,
        probabilities={name: float(p) for name, p in zip(classifier.classes, clipped)},
        uncertain=confidence < classifier.confidence_threshold,
        inference_ms=ms,
        model_version=classifier.model_version,
        out_of_distribution=out_of_distribution,
        ood_score=score,
    )
