"""Self-test inputs for a package: synthetic smear-like images, never dataset images."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def synthetic_smear(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A pale background with random red-cell rings and purple nuclei: varied model outputs, no patient data."""
    background = rng.uniform(200, 245, 3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = background
    for _ in range(int(rng.integers(15, 60))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        radius = int(rng.integers(6, 14))
        colour = tuple(float(v) for v in background * rng.uniform(0.7, 0.95, 3))
        cv2.circle(img, centre, radius, colour, thickness=int(rng.integers(2, 5)))
    for _ in range(int(rng.integers(1, 12))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(8, 28, 2))
        colour = (float(rng.uniform(60, 200)), float(rng.uniform(20, 120)), float(rng.uniform(120, 230)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, thickness=-1)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.5)))
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def selftest_inputs(
    predict: Callable[[np.ndarray], np.ndarray], n: int = 8, pool: int = 64, seed: int = 0, size: int = 224
) -> np.ndarray:
    """n synthetic images chosen so the model's predicted classes are as varied as possible."""
    rng = np.random.default_rng(seed)
    candidates = np.stack([synthetic_smear(rng, size) for _ in range(pool)])
    probs = predict(candidates)
    predicted = probs.argmax(axis=1)
    chosen: list[int] = []
    for cls in np.unique(predicted):
        members = np.flatnonzero(predicted == cls)
        chosen.extend(members[np.argsort(-probs[members, cls])][: max(1, n // len(np.unique(predicted)))].tolist())
    rest = [i for i in range(pool) if i not in chosen]
    chosen = (chosen + rest)[:n]
    return candidates[sorted(chosen)]
