"""What virtual nodes share to stay cheap: compiled models, stand-in classifiers (cheap, degraded), system metrics."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil

from contracts.confs import EdgeNodeConfs
from contracts.selftest import RawOutputs
from edge_node.inference import Classifier, ClassifierBase, ModelHolder, load_classifier
from edge_node.model_store import InstalledModel


class SharedClassifiers:
    """Loads each model version once per process; every node holding that version gets the same classifier."""

    def __init__(self, edge: EdgeNodeConfs) -> None:
        self._edge = edge
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str], Classifier] = {}

    def load(self, model: InstalledModel) -> Classifier:
        """The classifier for model on the configured runtime, loading it on first use."""
        manifest = model.manifest
        digests = "".join(entry.sha256 for _, entry in sorted(manifest.files.items()))
        key = (manifest.name, manifest.version, digests)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_classifier(model.path, manifest, self._edge)
            return self._loaded[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)


class CheapClassifier(ClassifierBase):
    """Deterministic, model-free: softmax over an image's mean colour; stands in for the real model it mirrors."""

    def __init__(self, real: Classifier) -> None:
        super().__init__(real.manifest, real.confidence_threshold)
        self.runtime = real.runtime
        self.device = real.device
        self.precision = real.precision

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """Probabilities from the mean of each channel (a stable function of the image); no OOD score."""
        means = batch.reshape(len(batch), -1, batch.shape[-1]).mean(axis=1) / 255.0
        repeats = -(-len(self.classes) // means.shape[1])
        scores = np.tile(means, (1, repeats))[:, : len(self.classes)] * 8.0
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return RawOutputs((exp / exp.sum(axis=1, keepdims=True)).astype(np.float32))


class FlatClassifier(ClassifierBase):
    """A degraded model: runs the classifier it wraps, then answers flat probabilities (confidence 1/classes)."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(inner.manifest, inner.confidence_threshold)
        self.runtime = inner.runtime
        self.device = inner.device
        self.precision = inner.precision
        self._inner = inner

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """The wrapped model's OOD scores and latency; every result uncertain under any threshold above 1/classes."""
        raw = self._inner.infer_raw(batch)
        flat = np.full(np.asarray(raw.probabilities).shape, 1.0 / len(self.classes), dtype=np.float32)
        return RawOutputs(flat, raw.ood_scores)


class StandInView:
    """A serving source for the pipeline: the holder's classifier, cheap and/or degraded as the fleet was told."""

    def __init__(self, holder: ModelHolder, cheap: bool = True,
                 uncertain_versions: frozenset[str] = frozenset()) -> None:
        self._holder = holder
        self._cheap = cheap
        self._uncertain_versions = uncertain_versions
        self._stand_in: Classifier | None = None
        self._real: Classifier | None = None

    def current(self) -> Classifier | None:
        """The stand-in for the classifier the holder serves now, or None."""
        real = self._holder.current()
        if real is None:
            return None
        if self._stand_in is None or self._real is not real:
            stand_in: Classifier = CheapClassifier(real) if self._cheap else real
            if real.model_version in self._uncertain_versions:
                stand_in = FlatClassifier(stand_in)
            self._stand_in, self._real = stand_in, real
        return self._stand_in

    @property
    def reason(self) -> str | None:
        """Why nothing serves, from the holder."""
        return self._holder.reason


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
