"""Trainer test fixtures: synthetic folder-per-class datasets, a throwaway confs.json, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = REPO.parent / "shared" / "datasets" / "all-aria"
CLASSES = ("Alpha", "Beta", "Gamma")


def draw(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A pale image with shapes whose kind and colour depend on the class."""
    # A smooth ramp gives the perceptual hash stable bits where a flat background would give noise.
    ramp = np.linspace(-25, 25, size)[None, :, None] * rng.choice([-1, 1])
    img = np.clip(np.full((size, size, 3), float(rng.integers(205, 225))) + ramp, 0, 255)
    colour = [(200, 40, 60), (40, 60, 200), (60, 160, 60)][label % 3]
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = (int(v) for v in rng.integers(size // 6, size - size // 6, 2))
        r = int(rng.integers(size // 12, size // 6))
        if label % 3 == 0:
            cv2.circle(img, (cx, cy), r, colour, -1)
        elif label % 3 == 1:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
        else:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(img, [pts], colour)
    noise = rng.normal(0, 3, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_dataset(root: Path, classes: tuple[str, ...] = CLASSES, per_class: int = 30, size: int = 64, seed: int = 0) -> Path:
    """Write numbered JPEGs per class; file 2 is duplicated as file 3 and file 9 has a near twin in 10 (across a block boundary at block size 5)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        previous = None
        for number in range(1, per_class + 1):
            path = folder / f"IMG-{name}-{number:03d}.jpg"
            if number == 3 and previous is not None:
                path.write_bytes(previous.read_bytes())
            elif number == 10:
                twin = cv2.imread(str(folder / f"IMG-{name}-009.jpg"))
                cv2.imwrite(str(path), cv2.add(cv2.GaussianBlur(twin, (3, 3), 0), 4), [cv2.IMWRITE_JPEG_QUALITY, 85])
            else:
                cv2.imwrite(str(path), cv2.cvtColor(draw(label, rng, size), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            previous = path
    return root


def write_confs(path: Path, data_dir: Path, work: Path, **trainer: object) -> Path:
    """A complete confs.json (defaults elsewhere) whose trainer section points at tmp folders."""
    section = {
        "data_dir": str(data_dir), "image_size": 64, "internal_size": 32, "width": 4, "epochs": 2,
        "batch_size": 16, "learning_rate": 0.003, "seed": 1, "patience": 2, "max_train_minutes": 5,
        "split": {"validation_fraction": 0.2, "test_fraction": 0.2, "block_size": 5},
        "runs_dir": str(work / "runs"), "package_dir": str(work / "models"),
        "signing_key": str(work / "keys" / "signing.pem"), **trainer,
    }
    confs = {"mqtt": {}, "identity": {}, "edge_node": {}, "dashboard": {}, "trainer": section, "ota": {}}
    path.write_text(json.dumps(confs, indent=2))
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m trainer ...` in a subprocess with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-class synthetic dataset shared by the tests (read-only)."""
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def dataset_maker():  # type: ignore[no-untyped-def]
    """The make_dataset helper, for tests that need their own variant."""
    return make_dataset


@pytest.fixture(scope="session")
def confs_writer():  # type: ignore[no-untyped-def]
    """The write_confs helper."""
    return write_confs


@pytest.fixture(scope="session")
def cli():  # type: ignore[no-untyped-def]
    """The run_cli helper."""
    return run_cli


def assert_runtimes_match_keras(model, images: np.ndarray, out: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    """Export a width-4 small CNN (72 OOD features, a trivial fit) and check OpenVINO, ONNX Runtime and LiteRT against Keras."""
    from trainer.export import export_formats
    from trainer.ood import MahalanobisFit, deployable, deployable_predict
    from trainer.runtimes import litert_runner, onnx_runner, openvino_runner

    fit = MahalanobisFit(np.zeros((3, 72), np.float32), np.eye(72, dtype=np.float32), 1.0, np.array([0.2, 0.2], np.float32))
    final = deployable(model, fit)
    reference_probs, reference_scores = deployable_predict(final, images)
    files = export_formats(final, out, size, fp16=False)
    for name, run in (("openvino", openvino_runner(files["openvino"])), ("onnx", onnx_runner(files["onnx"])),
                      ("litert", litert_runner(files["tflite"]))):
        result = run(images)
        np.testing.assert_allclose(result.probabilities, reference_probs, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(result.ood_scores, reference_scores, rtol=1e-3, err_msg=name)


@pytest.fixture(scope="session")
def runtimes_match_keras():  # type: ignore[no-untyped-def]
    """The assert_runtimes_match_keras helper."""
    return assert_runtimes_match_keras
