"""Building the signed model package: IR, self-test set, manifest with metrics."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.model_package import (
    InputSpec,
    Manifest,
    OutputSpec,
    SelfTestSpec,
    build_package,
)
from trainer.model import INPUT_NAME, OUTPUT_NAME
from trainer.ov_classifier import OpenVinoClassifier
from trainer.selftest import selftest_inputs

log = logging.getLogger(__name__)

SELFTEST_ATOL = 0.01


def package_path(package_dir: Path, name: str, version: str) -> Path:
    """Where a package of this name and version is written."""
    return package_dir / f"{name}-{version}.tar.gz"


def make_package(
    out_path: Path,
    ir_dir: Path,
    *,
    name: str,
    version: str,
    classes: list[str],
    image_size: int,
    preprocessing: dict[str, Any],
    training_data_sha256: str,
    metrics: dict[str, Any],
    private_key: Ed25519PrivateKey,
) -> Manifest:
    """Write a signed package holding ir_dir's model.xml/.bin and a self-test set the IR reproduces."""
    classifier = OpenVinoClassifier(ir_dir / "model.xml")
    inputs = selftest_inputs(lambda b: classifier.predict(b, parallel=False), size=image_size)
    outputs = classifier.predict(inputs, parallel=False)
    manifest = Manifest(
        name=name,
        version=version,
        classes=classes,
        input=InputSpec(
            name=INPUT_NAME, shape=[1, image_size, image_size, 3], layout="NHWC", dtype="uint8", color_order="RGB"
        ),
        output=OutputSpec(name=OUTPUT_NAME, shape=[1, len(classes)]),
        selftest=SelfTestSpec(file="selftest.npz", atol=SELFTEST_ATOL),
        preprocessing=preprocessing,
        training_data_sha256=training_data_sha256,
        metrics=metrics,
    )
    with tempfile.TemporaryDirectory(prefix="selftest-") as tmp:
        selftest = Path(tmp) / "selftest.npz"
        np.savez_compressed(selftest, inputs=inputs, outputs=outputs.astype(np.float32))
        files = {"model.xml": ir_dir / "model.xml", "model.bin": ir_dir / "model.bin", "selftest.npz": selftest}
        signed = build_package(out_path, manifest, files, private_key)
    log.info("wrote %s (%d bytes)", out_path, out_path.stat().st_size)
    return signed


def run_selftest(classifier: OpenVinoClassifier, selftest_file: Path, atol: float) -> float:
    """Max absolute difference between the IR's outputs and the recorded ones; raises if over atol."""
    with np.load(selftest_file) as data:
        inputs, expected = data["inputs"], data["outputs"]
    diff = float(np.abs(classifier.predict(inputs, parallel=False) - expected).max())
    if diff > atol:
        raise ValueError(f"self-test differs by {diff:.4g}, more than {atol}")
    return diff
