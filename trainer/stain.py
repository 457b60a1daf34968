"""Stain augmentation in optical-density space: HED jitter, the histopathology standard (Tellez et al. 2018)."""

from __future__ import annotations

import numpy as np

# Ruifrok & Johnston's haematoxylin, eosin and DAB stain vectors (rows), as scikit-image uses them.
RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]],
    dtype=np.float64,
)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_LOG_ADJUST = np.log(1e-6)


def rgb_to_hed(img: np.ndarray) -> np.ndarray:
    """uint8 RGB to stain concentrations (H, E, D) per pixel."""
    rgb = np.maximum(img.astype(np.float64) / 255.0, 1e-6)
    return (np.log(rgb) / _LOG_ADJUST) @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Stain concentrations back to uint8 RGB."""
    rgb = np.exp((hed @ RGB_FROM_HED) * _LOG_ADJUST)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def hed_jitter(img: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Scale and shift each stain's concentration: h' = h * scale + shift (3 values each)."""
    hed = rgb_to_hed(img)
    return hed_to_rgb(hed * np.asarray(scale, np.float64) + np.asarray(shift, np.float64))


def random_hed_jitter(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """HED jitter with scale ~ U(1-sigma, 1+sigma) and shift ~ U(-sigma, sigma) per stain, scaled to OD range."""
    scale = 1.0 + rng.uniform(-sigma, sigma, 3)
    # Concentrations of these smears span about 0-0.1; the shift is relative to that range.
    shift = rng.uniform(-sigma, sigma, 3) * 0.1
    return hed_jitter(img, scale, shift)
