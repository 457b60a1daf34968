"""The exported model files run through each edge runtime, as the trainer checks them before it signs.

Each runner takes (N, H, W, 3) uint8 RGB and returns contracts.selftest.RawOutputs. The node has its own
backends (edge_node.inference); parts share only contracts, so these stay minimal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contracts.model_package import Precision
from contracts.selftest import RawOutputs

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], RawOutputs]
PROBABILITIES = "probabilities"
OOD_SCORE = "ood_score"
_OV_HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


def cpu_precisions() -> list[Precision]:
    """Precisions this CPU runs natively in OpenVINO: f32 always; bf16 and f16 where the CPU has them."""
    import openvino as ov

    capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return ["f32"] + [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in capabilities]  # type: ignore[list-item]


def openvino_runner(xml: Path, precision: Precision = "f32", device: str = "CPU") -> Runner:
    """Run the IR one image per request, at an explicit inference precision."""
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _OV_HINTS[precision]}
    compiled = core.compile_model(core.read_model(str(xml)), device, config)
    request = compiled.create_infer_request()
    outputs = {name: port for port in compiled.outputs for name in port.get_names()}

    def run(batch: np.ndarray) -> RawOutputs:
        probs, scores = [], []
        for image in batch:
            result = request.infer({0: np.ascontiguousarray(image[None])})
            probs.append(np.array(result[outputs[PROBABILITIES]], np.float32)[0])
            if OOD_SCORE in outputs:
                scores.append(float(np.array(result[outputs[OOD_SCORE]]).reshape(-1)[0]))
        return RawOutputs(np.stack(probs), np.array(scores, np.float32) if scores else None)

    return run


def onnx_runner(path: Path) -> Runner:
    """Run the ONNX model on ONNX Runtime's CPU execution provider (f32)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(batch: np.ndarray) -> RawOutputs:
        results = [dict(zip(names, session.run(None, {"image": image[None]}))) for image in batch]
        probs = np.concatenate([r[PROBABILITIES] for r in results]).astype(np.float32)
        scores = np.concatenate([r[OOD_SCORE].reshape(-1) for r in results]) if OOD_SCORE in names else None
        return RawOutputs(probs, None if scores is None else scores.astype(np.float32))

    return run


def litert_runner(path: Path) -> Runner:
    """Run the .tflite model through LiteRT's signature runner (f32, batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner()

    def run(batch: np.ndarray) -> RawOutputs:
        results = [runner(image=image[None]) for image in batch]
        probs = np.concatenate([r[PROBABILITIES] for r in results]).astype(np.float32)
        has_ood = OOD_SCORE in results[0] if results else False
        scores = np.concatenate([r[OOD_SCORE].reshape(-1) for r in results]).astype(np.float32) if has_ood else None
        return RawOutputs(probs, scores)

    return run


def all_runners(files: dict[str, Path]) -> dict[tuple[str, Precision], Runner]:
    """Every (runtime, precision) this machine can run the exported files at."""
    runners: dict[tuple[str, Precision], Runner] = {}
    for precision in cpu_precisions():
        runners[("openvino", precision)] = openvino_runner(files["openvino"], precision)
    if "onnx" in files:
        runners[("onnxruntime", "f32")] = onnx_runner(files["onnx"])
    if "tflite" in files:
        runners[("litert", "f32")] = litert_runner(files["tflite"])
    return runners
