"""A real, signed, tiny model package for tests: an OpenVINO IR built with the opset API (format 1), or
format 2 with an OOD score, an ONNX model and optionally a .tflite (see support.tiny_formats).

The model is a nearest-colour-prototype classifier (mean colour → linear → softmax), so synthetic
images from `class_image` are classified as the label they were made for. Import it as
`from support.tiny_package import make_tiny_package, class_image`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.model_package import InputSpec, Manifest, OodSpec, OutputSpec, SelfTestSpec, build_package

CLASSES = ("Benign", "Early", "Pre", "Pro")
PROTOTYPES = {
    "Benign": (200, 60, 60),
    "Early": (60, 200, 60),
    "Pre": (60, 60, 200),
    "Pro": (220, 220, 220),
}
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
OOD_NAME = "ood_score"
OOD_THRESHOLD = 0.01


def class_image(label: str, size: int = 224, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image the tiny model classifies as `label`; seed varies its pixels (and hash)."""
    rng = np.random.default_rng(seed)
    base = np.array(PROTOTYPES[label], dtype=np.int16)
    noise = rng.integers(-20, 21, size=(size, size, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def tiny_weights(seed: int = 0, sharpness: float = 20.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights 3×4, bias 4, prototypes 4×3 in 0-1 units) of the nearest-colour classifier."""
    prototypes = np.array([PROTOTYPES[c] for c in CLASSES], dtype=np.float32) / 255.0
    rng = np.random.default_rng(seed)
    jitter = rng.normal(0.0, 0.01, size=prototypes.shape).astype(np.float32)
    weights = (2.0 * sharpness * (prototypes + jitter)).T.astype(np.float32)
    bias = (-sharpness * np.sum((prototypes + jitter) ** 2, axis=1)).astype(np.float32)
    return weights, bias, prototypes


def build_tiny_model(image_size: int = 224, seed: int = 0, sharpness: float = 20.0, *, fmt: int = 1) -> ov.Model:
    """Mean colour → nearest prototype as a linear layer → softmax, as an OpenVINO model.

    Format 1: float32 input, one output. Format 2: uint8 input and an `ood_score` output, the squared
    distance of the mean colour to the nearest prototype.
    """
    weights, bias, prototypes = tiny_weights(seed, sharpness)
    dtype = ov.Type.u8 if fmt == 2 else ov.Type.f32
    image = ops.parameter([1, image_size, image_size, 3], dtype, name=INPUT_NAME)
    pixels = ops.convert(image, ov.Type.f32) if fmt == 2 else image
    mean = ops.reduce_mean(pixels, ops.constant(np.array([1, 2], dtype=np.int64)), keep_dims=False)
    scaled = ops.multiply(mean, ops.constant(np.float32(1.0 / 255.0)))
    logits = ops.add(ops.matmul(scaled, ops.constant(weights), False, False), ops.constant(bias))
    probabilities = ops.softmax(logits, 1)
    probabilities.output(0).get_tensor().set_names({OUTPUT_NAME})
    outputs = [probabilities]
    if fmt == 2:
        offsets = ops.subtract(ops.unsqueeze(scaled, ops.constant(np.array([1], dtype=np.int64))), ops.constant(prototypes))
        distances = ops.reduce_sum(ops.multiply(offsets, offsets), ops.constant(np.array([2], dtype=np.int64)), False)
        score = ops.reduce_min(distances, ops.constant(np.array([1], dtype=np.int64)), False)
        score.output(0).get_tensor().set_names({OOD_NAME})
        outputs.append(score)
    return ov.Model(outputs, [image], "tiny_colour_classifier")


# Far from every prototype but clearly nearest to Pre: the self-test checks a flagged score too.
OOD_SELFTEST_COLOUR = (0, 0, 100)
TOLERANCES = {"f32": 1e-3, "bf16": 0.03, "f16": 0.03}


def selftest_inputs(image_size: int, fmt: int) -> np.ndarray:
    """One image per class, and for format 2 one out-of-distribution image."""
    images = [class_image(label, image_size, seed=i) for i, label in enumerate(CLASSES)]
    if fmt == 2:
        images.append(np.full((image_size, image_size, 3), OOD_SELFTEST_COLOUR, dtype=np.uint8))
    return np.stack(images)


def make_tiny_package(
    out_dir: Path,
    private_key: Ed25519PrivateKey,
    version: str = "1.0.0",
    *,
    break_selftest: bool = False,
    seed: int = 0,
    image_size: int = 224,
    fmt: int = 1,
    tflite: bool = False,
) -> Path:
    """Build `tiny-classifier-{version}.tar.gz` in out_dir and return its path.

    fmt=1: the IR alone (float32 input). fmt=2: uint8 input, an OOD score, the IR and an ONNX model,
    and with tflite=True a .tflite as well (written by TensorFlow in a child process).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(image_size, seed, fmt=fmt)
    inputs = selftest_inputs(image_size, fmt)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feed = inputs if fmt == 2 else inputs.astype(np.float32)
    results = [compiled(image[None]) for image in feed]
    outputs = np.concatenate([r[0] for r in results]).astype(np.float32)
    if break_selftest:
        outputs = np.roll(outputs, 1, axis=1)
    with tempfile.TemporaryDirectory(prefix="tiny-pkg-") as tmp:
        work = Path(tmp)
        ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
        names = ["model.xml", "model.bin", "selftest.npz"]
        extra: dict[str, object] = {}
        arrays = {"inputs": inputs, "outputs": outputs}
        if fmt == 2:
            from support.tiny_formats import write_onnx, write_tflite

            arrays["ood_scores"] = np.concatenate([r[1] for r in results]).astype(np.float32).reshape(-1)
            write_onnx(work / "model.onnx", image_size, seed)
            names.append("model.onnx")
            extra = {"model_onnx": "model.onnx", "ood": OodSpec(threshold=OOD_THRESHOLD, fitted_on="synthetic")}
            if tflite:
                write_tflite(work / "model.tflite", image_size, seed)
                names.append("model.tflite")
                extra["model_tflite"] = "model.tflite"
        np.savez(work / "selftest.npz", **arrays)
        dtype = "uint8" if fmt == 2 else "float32"
        selftest = SelfTestSpec(file="selftest.npz", atol=1e-3, tolerances=TOLERANCES if fmt == 2 else {})
        manifest = Manifest(
            format=fmt,
            name="tiny-classifier",
            version=version,
            classes=list(CLASSES),
            input=InputSpec(name=INPUT_NAME, shape=[1, image_size, image_size, 3], layout="NHWC", dtype=dtype),
            output=OutputSpec(name=OUTPUT_NAME, shape=[1, len(CLASSES)]),
            selftest=selftest,
            preprocessing={"resize": "bilinear", "scale": "inside the model"},
            training_data_sha256="0" * 64,
            metrics={"note": "synthetic test model"},
            **extra,  # type: ignore[arg-type]
        )
        files = {name: work / name for name in names}
        out_path = out_dir / f"tiny-classifier-{version}.tar.gz"
        build_package(out_path, manifest, files, private_key)
    return out_path
