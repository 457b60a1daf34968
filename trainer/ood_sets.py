"""Out-of-distribution evaluation sets made here: none of them takes part in training or in a threshold.

(The stain gate's 98% quantile, the default, was chosen with the stain x2.5 set in view, and the release report
says so when a release uses it; cross-validation now chooses the threshold rule on tuning sets: trainer.ood_sweep.)

Natural and other-microscopy images come from scikit-image's bundled samples; the rest are derived from
held-out smear fields: another magnification (zoomed single cells, down-scaled mosaics), blank, black,
over-exposed and blurred fields, and stain shifts far beyond training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from trainer import augment as A
from trainer.stain import hed_jitter

log = logging.getLogger(__name__)

NATURAL = ("astronaut", "coffee", "chelsea", "rocket", "colorwheel", "cat", "camera", "coins", "horse", "moon",
           "page", "text", "clock", "grass", "gravel", "brick", "logo")
MICROSCOPY = ("immunohistochemistry", "cell", "retina", "microaneurysms", "hubble_deep_field")


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = np.clip(image * (255 if image.max() <= 1 else 1), 0, 255).astype(np.uint8)
    return image


def _crops(image: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole image squashed to size, then random square crops of 1/4 to 3/4 of its short side."""
    out = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)]
    short = min(image.shape[:2])
    for _ in range(n - 1):
        side = int(rng.integers(max(short // 4, 16), max(short * 3 // 4, 17)))
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        out.append(cv2.resize(image[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA))
    return out


def sample_images(names: tuple[str, ...], per_image: int, size: int, seed: int) -> np.ndarray:
    """Crops of scikit-image's bundled sample images (those that load without a download)."""
    import skimage.data

    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for name in names:
        try:
            image = _rgb(np.asarray(getattr(skimage.data, name)()))
        except Exception as exc:  # a sample that needs a download or an extra package: skip it
            log.info("sample image %s unavailable: %s", name, exc)
            continue
        out.extend(_crops(image, per_image, size, rng))
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def zoomed_cells(fields: np.ndarray, zoom: int = 4) -> np.ndarray:
    """The most stained cell of each field cut out and enlarged `zoom` times (another magnification)."""
    size = fields.shape[1]
    side = size // zoom
    out = []
    for field in fields:
        stain = 255.0 - field.min(axis=2).astype(np.float32)  # nuclei are the darkest, most saturated parts
        stain = cv2.GaussianBlur(stain, (0, 0), 6)
        y, x = np.unravel_index(int(np.argmax(stain)), stain.shape)
        top, left = (int(np.clip(v - side // 2, 0, size - side)) for v in (y, x))
        out.append(cv2.resize(field[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_CUBIC))
    return np.stack(out)


def downscaled_mosaics(fields: np.ndarray, factor: int = 2) -> np.ndarray:
    """factor × factor fields shrunk into one image (a lower magnification)."""
    size = fields.shape[1]
    tile = size // factor
    n = len(fields) // (factor * factor)
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        for j in range(factor * factor):
            small = cv2.resize(fields[k * factor * factor + j], (tile, tile), interpolation=cv2.INTER_AREA)
            r, c = divmod(j, factor)
            out[k, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = small
    return out


def blank_fields(fields: np.ndarray, seed: int) -> np.ndarray:
    """Each field's background colour alone, with sensor noise: a slide with no cells, or a 1-pixel image."""
    rng = np.random.default_rng(seed)
    colours = np.median(fields.reshape(len(fields), -1, 3), axis=1)
    noise = rng.normal(0, 2, fields.shape)
    return np.clip(colours[:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _each(fields: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([fn(f) for f in fields])


# Sets made by changing whole fields, image for image: the field's label still says what the cell is.
LABELLED_SETS = ("over-exposed", "blurred", "hue +90", "stain x2.5 (HED)")


def base_indices(n_fields: int, seed: int = 0, n: int = 40) -> np.ndarray:
    """Which fields the LABELLED_SETS are made from, in order."""
    return np.random.default_rng(seed).permutation(n_fields)[: 4 * n][:n]


def ood_sets(fields: np.ndarray, seed: int = 0, n: int = 40) -> dict[str, np.ndarray]:
    """Every OOD evaluation set, built from held-out in-distribution fields (N×S×S×3) and bundled samples."""
    size = fields.shape[1]
    rng = np.random.default_rng(seed)
    pick = fields[rng.permutation(len(fields))[: 4 * n]]
    base = pick[:n]
    dark = np.clip(rng.normal(4, 3, (n // 2, size, size, 3)), 0, 255).astype(np.uint8)
    return {
        "natural images": sample_images(NATURAL, 3, size, seed),
        "other microscopy": sample_images(MICROSCOPY, 8, size, seed),
        "zoomed cells (4x)": zoomed_cells(base),
        "down-scaled fields (0.5x)": downscaled_mosaics(pick),
        "blank fields": blank_fields(base, seed),
        "black": np.concatenate([np.zeros((1, size, size, 3), np.uint8), dark]),
        "over-exposed": _each(base, lambda f: A.brightness(f, 2.2)),
        "blurred": _each(base, lambda f: A.gaussian_blur(f, 8.0)),
        "hue +90": _each(base, lambda f: A.hue_shift(f, 90)),
        "stain x2.5 (HED)": _each(base, lambda f: hed_jitter(f, np.array([2.5, 2.5, 1.0]), np.zeros(3))),
    }
