"""OpenVINO classifier loaded from an unpacked model package and checked against its manifest."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from contracts.model_package import Manifest

logger = logging.getLogger(__name__)

_SCALES = {"raw 0-255": 1.0, "0-1": 1.0 / 255.0}
_DTYPES = {"uint8": ov.Type.u8, "float32": ov.Type.f32}


class ModelMismatchError(ValueError):
    """The IR does not match what its manifest promises, or cannot run on the chosen device."""


@dataclass(frozen=True)
class Prediction:
    """One classification result."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool
    inference_ms: float
    model_version: str


def _dims_agree(ir_shape: ov.PartialShape, declared: list[int]) -> bool:
    """True when every static IR dimension equals the declared one (declared <= 0 means any)."""
    if ir_shape.rank.is_dynamic or ir_shape.rank.get_length() != len(declared):
        return False
    for ir_dim, want in zip(ir_shape, declared):
        if ir_dim.is_static and want > 0 and ir_dim.get_length() != want:
            return False
    return True


class OpenVinoClassifier:
    """Runs one model package's IR on an OpenVINO device; safe to call from several threads."""

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        device: str = "CPU",
        confidence_threshold: float = 0.8,
        core: ov.Core | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.model_version = manifest.version
        self.classes: tuple[str, ...] = tuple(manifest.classes)
        self.confidence_threshold = confidence_threshold
        self._check_spec(manifest)
        core = core or ov.Core()
        xml_path = Path(package_dir) / manifest.model_xml
        try:
            model = core.read_model(str(xml_path), str(Path(package_dir) / manifest.model_bin))
        except RuntimeError as exc:
            raise ModelMismatchError(f"cannot read the IR {xml_path}: {exc}") from None
        self._input_index, self._output_index = self._check_model(model)
        self._static_batch_one = self._batch_is_one(model)
        config: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY"}
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        try:
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise ModelMismatchError(f"cannot compile model {manifest.name} {manifest.version} on {device}: {exc}") from None
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        logger.info("loaded model %s %s on %s", manifest.name, manifest.version, device)

    def _check_spec(self, manifest: Manifest) -> None:
        """Refuse manifest input specs this runner cannot feed."""
        spec = manifest.input
        if len(spec.shape) != 4:
            raise ModelMismatchError(f"manifest input shape {spec.shape} is not a 4-D image batch")
        if spec.scale not in _SCALES:
            raise ModelMismatchError(f"manifest input scale {spec.scale!r} is not one of {sorted(_SCALES)}")
        channels = spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]
        if channels != 3:
            raise ModelMismatchError(f"manifest input has {channels} channels; 3 are required")
        self._height, self._width = (spec.shape[1], spec.shape[2]) if spec.layout == "NHWC" else spec.shape[2:4]
        if self._height <= 0 or self._width <= 0:
            raise ModelMismatchError(f"manifest input shape {spec.shape} has no fixed height and width")

    def _check_model(self, model: ov.Model) -> tuple[int, int]:
        """Find the manifest's input and output in the IR and check shapes and types."""
        spec, out_spec = self.manifest.input, self.manifest.output
        if len(model.inputs) != 1:
            raise ModelMismatchError(f"IR has {len(model.inputs)} inputs; the manifest describes one")
        port = model.inputs[0]
        if spec.name not in port.get_names():
            raise ModelMismatchError(f"IR input is named {sorted(port.get_names())}, manifest says {spec.name!r}")
        if not _dims_agree(port.get_partial_shape(), spec.shape):
            raise ModelMismatchError(f"IR input shape {port.get_partial_shape()} differs from manifest {spec.shape}")
        if port.get_element_type() != _DTYPES[spec.dtype]:
            raise ModelMismatchError(f"IR input type {port.get_element_type()} differs from manifest {spec.dtype}")
        outputs = [i for i, out in enumerate(model.outputs) if out_spec.name in out.get_names()]
        if not outputs:
            names = [sorted(out.get_names()) for out in model.outputs]
            raise ModelMismatchError(f"IR outputs {names} do not include the manifest's {out_spec.name!r}")
        out_shape = model.outputs[outputs[0]].get_partial_shape()
        if not _dims_agree(out_shape, out_spec.shape):
            raise ModelMismatchError(f"IR output shape {out_shape} differs from manifest {out_spec.shape}")
        last = out_shape[out_shape.rank.get_length() - 1]
        if last.is_dynamic or last.get_length() != len(self.classes):
            raise ModelMismatchError(f"IR output has {last} classes, manifest lists {len(self.classes)}")
        return 0, outputs[0]

    @staticmethod
    def _batch_is_one(model: ov.Model) -> bool:
        """True when the IR only takes one image per request."""
        batch = model.inputs[0].get_partial_shape()[0]
        return batch.is_static and batch.get_length() == 1

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 RGB image as one input tensor of the manifest's shape, layout, order and type."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} {rgb.dtype}")
        spec = self.manifest.input
        if rgb.shape[:2] != (self._height, self._width):
            shrinking = rgb.shape[0] > self._height or rgb.shape[1] > self._width
            rgb = cv2.resize(rgb, (self._width, self._height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if spec.color_order == "BGR":
            rgb = rgb[:, :, ::-1]
        tensor = rgb if spec.layout == "NHWC" else rgb.transpose(2, 0, 1)
        if spec.dtype == "float32":
            tensor = tensor.astype(np.float32) * np.float32(_SCALES[spec.scale])
        return np.ascontiguousarray(tensor[np.newaxis])

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        """Run N inputs already shaped like the manifest's input; returns (N, n_classes) probabilities."""
        expected = tuple(self.manifest.input.shape[1:])
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"batch shape {batch.shape} does not match manifest input (N, {expected})")
        batch = batch.astype(_DTYPES[self.manifest.input.dtype].to_dtype(), copy=False)
        chunks = [batch[i : i + 1] for i in range(len(batch))] if self._static_batch_one else [batch]
        results = []
        with self._lock:
            for chunk in chunks:
                outputs = self._request.infer({self._input_index: np.ascontiguousarray(chunk)})
                results.append(np.array(outputs[self._compiled.outputs[self._output_index]], dtype=np.float32))
        probabilities = np.concatenate(results).reshape(len(batch), len(self.classes))
        return probabilities

    def classify(self, rgb: np.ndarray) -> Prediction:
        """Classify one RGB image of any size."""
        started = time.perf_counter()
        probabilities = self.infer_raw(self.preprocess(rgb))[0]
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        clipped = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
        best = int(np.argmax(clipped))
        confidence = float(clipped[best])
        return Prediction(
            label=self.classes[best],
            confidence=confidence,
            probabilities={name: float(p) for name, p in zip(self.classes, clipped)},
            uncertain=confidence < self.confidence_threshold,
            inference_ms=elapsed_ms,
            model_version=self.model_version,
        )
