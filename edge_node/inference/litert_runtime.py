"""LiteRT (TFLite) runtime, for ARM boards without OpenVINO: the model's `serving_default` signature on the CPU.

Precision: f32 only (f16 would need the GPU delegate, which this node does not load).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from contracts.confs import EdgeNodeConfs, LiteRtConfs
from contracts.model_package import Manifest
from contracts.selftest import RawOutputs
from edge_node.inference.base import ClassifierBase, ModelMismatchError, RequestedPrecision, UnsupportedPrecision

logger = logging.getLogger(__name__)

SIGNATURE = "serving_default"
_DTYPES = {"uint8": np.uint8, "float32": np.float32}


class LiteRtClassifier(ClassifierBase):
    """Runs a package's .tflite through its serving signature, one image per call."""

    runtime = "litert"

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        settings: LiteRtConfs | None = None,
        *,
        precision: RequestedPrecision = "f32",
        confidence_threshold: float = 0.8,
    ) -> None:
        super().__init__(manifest, confidence_threshold)
        settings = settings or LiteRtConfs()
        if manifest.model_tflite is None:
            raise ModelMismatchError("runtime litert has no model file in this package")
        if precision in ("f16", "bf16"):
            raise UnsupportedPrecision(
                f"LiteRT runs f32 on the CPU; {precision} is not supported here (set edge_node.inference_precision "
                "to f32 or auto)"
            )
        path = Path(package_dir) / manifest.model_tflite
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=settings.num_threads)
            self._runner = interpreter.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelMismatchError(f"cannot load the LiteRT model {path.name}: {exc}") from None
        self._interpreter = interpreter
        self._outputs = self._check_model(interpreter)
        self._lock = threading.Lock()
        logger.info("loaded model %s %s on LiteRT CPU at f32", manifest.name, manifest.version)

    def _check_model(self, interpreter: Interpreter) -> list[str]:
        """The signature's output names to read; its input must be the manifest's, of its type."""
        signature = interpreter.get_signature_list().get(SIGNATURE, {})
        spec = self.manifest.input
        if list(signature.get("inputs", [])) != [spec.name]:
            raise ModelMismatchError(f"{SIGNATURE} inputs {signature.get('inputs')} are not [{spec.name!r}]")
        details = self._runner.get_input_details()[spec.name]
        if details["dtype"] != _DTYPES[spec.dtype]:
            raise ModelMismatchError(f"LiteRT input type {details['dtype']} differs from manifest {spec.dtype}")
        wanted = [self.manifest.output.name] + ([self.manifest.ood.output] if self.manifest.ood else [])
        names = list(signature.get("outputs", []))
        if missing := [w for w in wanted if w not in names]:
            raise ModelMismatchError(f"{SIGNATURE} outputs {names} do not include the manifest's {missing}")
        return wanted

    def infer_raw(self, batch: np.ndarray) -> RawOutputs:
        """N uint8 RGB images of the model's input size → probabilities (N, classes) and OOD scores (N,)."""
        tensor = self.check_batch(batch)
        name = self.manifest.input.name
        probs, scores = [], []
        with self._lock:  # a signature runner shares the interpreter's tensors
            for i in range(len(tensor)):
                out = self._runner(**{name: tensor[i : i + 1]})
                probs.append(np.array(out[self._outputs[0]], dtype=np.float32).reshape(-1))
                if len(self._outputs) > 1:
                    scores.append(np.array(out[self._outputs[1]], dtype=np.float32).reshape(-1))
        probabilities = np.stack(probs).reshape(len(batch), len(self.classes))
        return RawOutputs(probabilities, np.concatenate(scores) if scores else None)


def create(package_dir: Path, manifest: Manifest, confs: EdgeNodeConfs, precision: RequestedPrecision) -> LiteRtClassifier:
    """The registry's entry point: the litert section of the node's confs."""
    return LiteRtClassifier(
        package_dir, manifest, confs.litert, precision=precision, confidence_threshold=confs.confidence_threshold
    )


def check(confs: EdgeNodeConfs) -> list[str]:
    """Problems with the precision for LiteRT, naming the key."""
    if confs.inference_precision in ("f16", "bf16"):
        return [f"edge_node.inference_precision: LiteRT runs f32 on the CPU, not {confs.inference_precision}"]
    return []
