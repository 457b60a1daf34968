"""A real, signed, tiny model package for tests: an OpenVINO IR built with the opset API, no TensorFlow.

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

from contracts.model_package import InputSpec, Manifest, OutputSpec, SelfTestSpec, build_package

CLASSES = ("Benign", "Early", "Pre", "Pro")
PROTOTYPES = {
    "Benign": (200, 60, 60),
    "Early": (60, 200, 60),
    "Pre": (60, 60, 200),
    "Pro": (220, 220, 220),
}
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def class_image(label: str, size: int = 224, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image the tiny model classifies as `label`; seed varies its pixels (and hash)."""
    rng = np.random.default_rng(seed)
    base = np.array(PROTOTYPES[label], dtype=np.int16)
    noise = rng.integers(-20, 21, size=(size, size, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def build_tiny_model(image_size: int = 224, seed: int = 0, sharpness: float = 20.0) -> ov.Model:
    """Mean colour → nearest prototype as a linear layer → softmax, as an OpenVINO model."""
    prototypes = np.array([PROTOTYPES[c] for c in CLASSES], dtype=np.float32) / 255.0
    rng = np.random.default_rng(seed)
    jitter = rng.normal(0.0, 0.01, size=prototypes.shape).astype(np.float32)
    weights = (2.0 * sharpness * (prototypes + jitter)).T.astype(np.float32)
    bias = (-sharpness * np.sum((prototypes + jitter) ** 2, axis=1)).astype(np.float32)
    image = ops.parameter([1, image_size, image_size, 3], ov.Type.f32, name=INPUT_NAME)
    mean = ops.reduce_mean(image, ops.constant(np.array([1, 2], dtype=np.int64)), keep_dims=False)
    scaled = ops.multiply(mean, ops.constant(np.float32(1.0 / 255.0)))
    logits = ops.add(ops.matmul(scaled, ops.constant(weights), False, False), ops.constant(bias))
    probabilities = ops.softmax(logits, 1)
    probabilities.output(0).get_tensor().set_names({OUTPUT_NAME})
    return ov.Model([probabilities], [image], "tiny_colour_classifier")


def make_tiny_package(
    out_dir: Path,
    private_key: Ed25519PrivateKey,
    version: str = "1.0.0",
    *,
    break_selftest: bool = False,
    seed: int = 0,
    image_size: int = 224,
) -> Path:
    """Build `tiny-classifier-{version}.tar.gz` in out_dir and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(image_size, seed)
    inputs = np.stack([class_image(label, image_size, seed=i) for i, label in enumerate(CLASSES)])
    compiled = ov.Core().compile_model(model, "CPU")
    outputs = np.concatenate([compiled(image[None].astype(np.float32))[0] for image in inputs]).astype(np.float32)
    if break_selftest:
        outputs = np.roll(outputs, 1, axis=1)
    with tempfile.TemporaryDirectory(prefix="tiny-pkg-") as tmp:
        work = Path(tmp)
        ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
        np.savez(work / "selftest.npz", inputs=inputs, outputs=outputs)
        manifest = Manifest(
            name="tiny-classifier",
            version=version,
            classes=list(CLASSES),
            input=InputSpec(name=INPUT_NAME, shape=[1, image_size, image_size, 3], layout="NHWC", dtype="float32"),
            output=OutputSpec(name=OUTPUT_NAME, shape=[1, len(CLASSES)]),
            selftest=SelfTestSpec(file="selftest.npz", atol=1e-3),
            preprocessing={"resize": "bilinear", "scale": "inside the model"},
            training_data_sha256="0" * 64,
            metrics={"note": "synthetic test model"},
        )
        files = {name: work / name for name in ("model.xml", "model.bin", "selftest.npz")}
        out_path = out_dir / f"tiny-classifier-{version}.tar.gz"
        build_package(out_path, manifest, files, private_key)
    return out_path
