"""What virtual nodes share to stay cheap: compiled models, a deterministic stand-in classifier, system metrics."""

from __future__ import annotations

import threading
import time

import numpy as np
import openvino as ov
import psutil

from edge_node.inference import ModelHolder, OpenVinoClassifier, Prediction
from edge_node.model_store import InstalledModel


class SharedClassifiers:
    """Compiles each model version once per process; every node holding that version gets the same classifier."""

    def __init__(self, core: ov.Core, device: str = "CPU", confidence_threshold: float = 0.8) -> None:
        self._core = core
        self._device = device
        self._threshold = confidence_threshold
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str], OpenVinoClassifier] = {}

    def load(self, model: InstalledModel) -> OpenVinoClassifier:
        """The classifier for model, compiling it on first use."""
        manifest = model.manifest
        bin_entry = manifest.files.get(manifest.model_bin)
        key = (manifest.name, manifest.version, bin_entry.sha256 if bin_entry else "")
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = OpenVinoClassifier(
                    model.path, manifest, self._device, self._threshold, self._core
                )
            return self._loaded[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)


class CheapClassifier:
    """Deterministic, model-free: softmax over an image's mean colour; carries the real model's version."""

    def __init__(self, model_version: str, classes: tuple[str, ...], confidence_threshold: float = 0.8) -> None:
        self.model_version = model_version
        self.classes = classes
        self._threshold = confidence_threshold

    def classify(self, rgb: np.ndarray) -> Prediction:
        """Probabilities from the mean of each channel (a stable function of the image)."""
        started = time.perf_counter()
        means = rgb.reshape(-1, rgb.shape[-1]).mean(axis=0) / 255.0
        scores = np.resize(means, len(self.classes)) * 8.0
        exp = np.exp(scores - scores.max())
        probabilities = exp / exp.sum()
        best = int(np.argmax(probabilities))
        return Prediction(
            label=self.classes[best],
            confidence=float(probabilities[best]),
            probabilities={c: float(p) for c, p in zip(self.classes, probabilities)},
            uncertain=float(probabilities[best]) < self._threshold,
            inference_ms=(time.perf_counter() - started) * 1000.0,
            model_version=self.model_version,
        )


class CheapView:
    """Looks like a ModelHolder to the pipeline, answering with a CheapClassifier for the real model's version."""

    def __init__(self, holder: ModelHolder) -> None:
        self._holder = holder
        self._cheap: CheapClassifier | None = None

    def current(self) -> CheapClassifier | None:
        real = self._holder.current()
        if real is None:
            return None
        cheap = self._cheap
        if cheap is None or cheap.model_version != real.model_version:
            cheap = self._cheap = CheapClassifier(real.model_version, tuple(real.classes), real.confidence_threshold)
        return cheap


class SystemSampler:
    """CPU, memory and disk percentages, measured at most once a second for the whole fleet."""

    def __init__(self, disk_path: str) -> None:
        self._disk_path = disk_path
        self._lock = threading.Lock()
        self._at = 0.0
        self._values = (0.0, 0.0, 0.0)
        psutil.cpu_percent(None)

    def __call__(self) -> tuple[float, float, float]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= 1.0:
                self._values = (
                    min(100.0, psutil.cpu_percent(None)),
                    psutil.virtual_memory().percent,
                    psutil.disk_usage(self._disk_path).percent,
                )
                self._at = now
            return self._values


def synthetic_images(count: int = 8, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    """Plain-colour RGB images with noise: stand-ins for smears (no patient data in a load test)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.integers(40, 220, size=3)
        noise = rng.integers(-20, 21, size=(size, size, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images
