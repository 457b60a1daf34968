"""ONNX Runtime: the CPU execution provider, and CUDA or TensorRT for NVIDIA GPUs and Jetson boards.

CUDA and TensorRT need the `onnxruntime-gpu` wheel (or NVIDIA's Jetson build) instead of `onnxruntime`.
Precision: f32 everywhere; f16 only through TensorRT (`trt_fp16_enable`); bf16 is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from contracts.confs import EdgeNodeConfs, OnnxRuntimeConfs
from contracts.model_package import Manifest, Precision
from contracts.selftest import RawOutputs
from edge_node.inference.base import (
    ClassifierBase,
    ModelMismatchError,
    RequestedPrecision,
    RuntimeUnavailable,
    UnsupportedPrecision,
)

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
_ONNX_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}


def check_providers(providers: list[str]) -> None:
    """Raise RuntimeUnavailable naming each configured provider this onnxruntime build lacks."""
    available = ort.get_available_providers()
    if missing := [p for p in providers if p not in available]:
        raise RuntimeUnavailable(
            f"ONNX Runtime execution provider {', '.join(missing)} is not available in this onnxruntime "
            f"build (available: {', '.join(available)}); CUDA and TensorRT need the onnxruntime-gpu wheel "
            "or NVIDIA's Jetson build"
        )


def preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip wheels (nvidia-*-cu13 and the like) where this build can.

    onnxruntime-gpu finds those libraries only when they are on the loader path or already loaded; a build without
    `preload_dlls` (before 1.21) relies on the loader path, as with a system CUDA.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload(cuda=True, cudnn=True, msvc=False)


def resolve_precision(providers: list[str], requested: RequestedPrecision) -> Precision:
    """The precision the configured providers run, or UnsupportedPrecision for a combination they cannot."""
    if requested == "bf16":
        raise UnsupportedPrecision("ONNX Runtime has no bf16 mode: use f32, or f16 with the TensorRT provider")
    if requested == "f16" and providers[0] != TENSORRT:
        raise UnsupportedPrecision(
            "ONNX Runtime runs f16 only through TensorRT (trt_fp16_enable): put TensorrtExecutionProvider "
            "first in edge_node.onnxruntime.providers, or set edge_node.inference_precision to f32"
        )
    return "f16" if requested == "f16" else "f32"


class OnnxRuntimeClassifier(ClassifierBase):
    """Runs a package's ONNX model with the configured execution providers."""

    runtime = "onnxruntime"

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        settings: OnnxRuntimeConfs | None = None,
        *,
        precision: RequestedPrecision = "f32",
        confidence_threshold: float = 0.8,
    ) -> None:
        super().__init__(manifest, confidence_threshold)
        settings = settings or OnnxRuntimeConfs()
        if manifest.model_onnx is None:
            raise ModelMismatchError("runtime onnxruntime has no model file in this package")
        providers = list(settings.providers)
        check_providers(providers)
        if {CUDA, TENSORRT} & set(providers):
            preload_gpu_libraries()
        self.precision = resolve_precision(providers, precision)
        options = ort.SessionOptions()
        if settings.num_threads is not None:
            options.intra_op_num_threads = settings.num_threads
        path = Path(package_dir) / manifest.model_onnx
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=[(p, self._provider_options(p, settings)) for p in providers]
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelMismatchError(f"cannot load the ONNX model {path.name}: {exc}") from None
        active = self._session.get_providers()
        if active[0] != providers[0]:
            raise RuntimeUnavailable(
                f"ONNX Runtime could not start {providers[0]} (it fell back to {active[0]}): the CUDA, cuDNN or "
                "TensorRT libraries of the onnxruntime-gpu build's CUDA major version are missing or not on the "
                "loader path"
            )
        self.device = active[0]
        self._outputs = self._check_model()
        shape = self._session.get_inputs()[0].shape
        self._batch_one = shape[0] == 1
        logger.info("loaded model %s %s on ONNX Runtime %s at %s", manifest.name, manifest.version, self.device,
                    self.precision)

    def _provider_options(self, provider: str, settings: OnnxRuntimeConfs) -> dict[str, Any]:
        if provider == CUDA:
            return {"device_id": settings.device_id}
        if provider == TENSORRT:
            options: dict[str, Any] = {"device_id": settings.device_id, "trt_fp16_enable": self.precision == "f16"}
            if settings.trt_cache_dir:
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=settings.trt_cache_dir)
            return options
        return {}

    def _check_model(self) -> list[str]:
        """The output names to fetch; the input must be the manifest's, of its type."""
        spec = self.manifest.input
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != spec.name:
            raise ModelMismatchError(f"ONNX inputs {[i.name for i in inputs]} are not the manifest's {spec.name!r}")
        if inputs[0].type != _ONNX_TYPES[spec.dtype]:
            raise ModelMismatchError(f"ONNX input type {inputs[0].type} differs from manifest {spec.dtype}")
        wanted = [self.manifest.output.name] + ([self.manifest.ood.output] if self.manifest.ood else [])
        names = [o.name for o in self._session.get_outputs()]
        if missing := [w for w in wanted if w not in names]:
            raise ModelMismatchError(f"ONNX outputs {names} do not include the manifest's {missing}")
        return wanted

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """N uint8 RGB images of the model's input size → probabilities (N, classes) and OOD scores (N,)."""
        tensor = self.check_batch(batch)
        chunks = [tensor[i : i + 1] for i in range(len(tensor))] if self._batch_one else [tensor]
        name = self.manifest.input.name
        results = [self._session.run(self._outputs, {name: chunk}) for chunk in chunks]
        probabilities = np.concatenate([np.asarray(r[0], dtype=np.float32) for r in results])
        probabilities = probabilities.reshape(len(batch), len(self.classes))
        ood = None
        if len(self._outputs) > 1:
            ood = np.concatenate([np.asarray(r[1], dtype=np.float32).reshape(-1) for r in results])
        return RawOutputs(probabilities, ood)


def create(
    package_dir: Path, manifest: Manifest, confs: EdgeNodeConfs, precision: RequestedPrecision
) -> OnnxRuntimeClassifier:
    """The registry's entry point: the onnxruntime section of the node's confs."""
    return OnnxRuntimeClassifier(
        package_dir, manifest, confs.onnxruntime, precision=precision, confidence_threshold=confs.confidence_threshold
    )


def check(confs: EdgeNodeConfs) -> list[str]:
    """Problems with the onnxruntime section and the precision, each naming its key."""
    problems = []
    try:
        check_providers(list(confs.onnxruntime.providers))
    except RuntimeUnavailable as exc:
        problems.append(f"edge_node.onnxruntime.providers: {exc}")
    try:
        resolve_precision(list(confs.onnxruntime.providers), confs.inference_precision)
    except UnsupportedPrecision as exc:
        problems.append(f"edge_node.inference_precision: {exc}")
    return problems
