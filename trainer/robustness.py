"""Stain, illumination and compression shifts used to test robustness (never used for training)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainer import augment as A
from trainer.stain import hed_jitter

Shift = Callable[[np.ndarray], np.ndarray]

SHIFTS: dict[str, Shift] = {
    "hue -15": lambda img: A.hue_shift(img, -15),
    "hue +15": lambda img: A.hue_shift(img, 15),
    "saturation 0.6": lambda img: A.saturation(img, 0.6),
    "saturation 1.4": lambda img: A.saturation(img, 1.4),
    "brightness 0.85": lambda img: A.brightness(img, 0.85),
    "brightness 1.15": lambda img: A.brightness(img, 1.15),
    "contrast 0.8": lambda img: A.contrast(img, 0.8),
    "grayscale": A.grayscale,
    "jpeg q50": lambda img: A.jpeg(img, 50),
    "gaussian blur 1.0": lambda img: A.gaussian_blur(img, 1.0),
    # A fixed, strong stain change: more haematoxylin, less eosin, a faint tint (the H&E of another lab).
    "HED jitter": lambda img: hed_jitter(img, np.array([1.08, 0.92, 1.0]), np.array([0.004, -0.004, 0.002])),
}


def shifted(images: np.ndarray, shift: Shift) -> np.ndarray:
    """Apply a shift to every image of a uint8 batch."""
    return np.stack([shift(img) for img in images]) if len(images) else images


def robustness_table(
    images: np.ndarray,
    labels: np.ndarray,
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]],
    shifts: dict[str, Shift] | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracy of each predictor (uint8 batch -> probabilities) on clean and shifted images."""
    table: dict[str, dict[str, float]] = {}
    cases: dict[str, Shift | None] = {"clean": None, **(shifts if shifts is not None else SHIFTS)}
    for name, shift in cases.items():
        batch = images if shift is None else shifted(images, shift)
        table[name] = {
            who: float((predict(batch).argmax(axis=1) == labels).mean()) if len(labels) else 0.0
            for who, predict in predictors.items()
        }
    return table
