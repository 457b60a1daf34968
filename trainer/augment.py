"""Image augmentations on uint8 RGB arrays, applied on the fly to training batches only."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from contracts.confs import BlurAugmentConfs, StainAugmentConfs, ZoomAugmentConfs
from trainer.stain import random_hed_jitter

log = logging.getLogger(__name__)
_STAIN_DEFAULTS = StainAugmentConfs()
_BLUR_DEFAULTS = BlurAugmentConfs()
_ZOOM_DEFAULTS = ZoomAugmentConfs()

# The microscope's scale-bar label sits in the bottom-right corner; its style differs between
# sessions (and so between classes), which makes it a shortcut.
SCALE_BAR_HEIGHT = 36 / 224
SCALE_BAR_WIDTH = 56 / 224


def grayscale(img: np.ndarray) -> np.ndarray:
    """Luminance replicated over three channels."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def equalize_histogram(img: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the luminance channel."""
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def flip(img: np.ndarray, horizontal: bool = True) -> np.ndarray:
    """Horizontal or vertical reflection."""
    return np.ascontiguousarray(img[:, ::-1] if horizontal else img[::-1])


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with the given sigma in pixels."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(sigma, 1e-3))


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation about the centre, reflecting at the borders so no black corners appear."""
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def zoom(img: np.ndarray, factor: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Magnify by factor (below 1 shrinks) about centre (x, y), reflecting at the borders; the size stays."""
    h, w = img.shape[:2]
    cx, cy = centre if centre is not None else (w / 2 - 0.5, h / 2 - 0.5)
    matrix = np.array([[factor, 0, (1 - factor) * cx], [0, factor, (1 - factor) * cy]], np.float32)
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def hue_saturation(img: np.ndarray, hue_degrees: float = 0.0, saturation: float = 1.0) -> np.ndarray:
    """Rotate hue by degrees and scale saturation by a factor."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hue_lut = ((np.arange(256) + hue_degrees * 256 / 360) % 256).astype(np.uint8)
    sat_lut = np.clip(np.arange(256) * saturation, 0, 255).astype(np.uint8)
    hsv[..., 0] = cv2.LUT(hsv[..., 0], hue_lut)
    hsv[..., 1] = cv2.LUT(hsv[..., 1], sat_lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def hue_shift(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate hue by degrees."""
    return hue_saturation(img, hue_degrees=degrees)


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale saturation by a factor."""
    return hue_saturation(img, saturation=factor)


def brightness_contrast(
    img: np.ndarray, brightness: float = 1.0, contrast: float = 1.0, gains: tuple[float, float, float] = (1, 1, 1)
) -> np.ndarray:
    """Multiply by brightness (and per-channel stain gains), then stretch contrast about mid grey."""
    levels = np.arange(256, dtype=np.float32)
    out = np.empty_like(img)
    for c in range(3):
        lut = (levels * brightness * gains[c] - 128.0) * contrast + 128.0
        out[..., c] = cv2.LUT(img[..., c], np.clip(np.rint(lut), 0, 255).astype(np.uint8))
    return out


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply intensities by a factor (illumination change)."""
    return brightness_contrast(img, brightness=factor)


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Stretch or squeeze intensities about mid grey."""
    return brightness_contrast(img, contrast=factor)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress as JPEG at the given quality."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return img
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def scale_bar_box(height: int, width: int) -> tuple[int, int]:
    """Top row and left column of the scale-bar corner for an image of this size."""
    return height - round(height * SCALE_BAR_HEIGHT), width - round(width * SCALE_BAR_WIDTH)


def mask_scale_bar(img: np.ndarray) -> np.ndarray:
    """Fill the scale-bar corner with the image's mean colour (the model does the same inside)."""
    top, left = scale_bar_box(*img.shape[:2])
    out = img.copy()
    out[top:, left:] = img.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    return out


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the random training augmentations."""

    p_flip: float = 0.5
    p_rotate: float = 0.5
    max_rotation: float = 180.0
    p_blur: float = _BLUR_DEFAULTS.p_blur  # defaults set in confs, like the stain jitter's
    blur_sigma: tuple[float, float] = (0.3, _BLUR_DEFAULTS.max_sigma)
    p_zoom: float = _ZOOM_DEFAULTS.p_zoom
    max_zoom: float = _ZOOM_DEFAULTS.max_factor
    p_equalize: float = 0.03
    p_grayscale: float = 0.12
    p_color: float = 0.9
    hue_degrees: float = 20.0
    saturation: tuple[float, float] = (0.5, 1.5)
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.7, 1.3)
    stain_gain: float = 0.1
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (35, 95)
    p_hed: float = _STAIN_DEFAULTS.p_hed
    hed_sigma: float = _STAIN_DEFAULTS.hed_sigma


class Augmenter:
    """Random augmentation of single images or batches, reproducible from a seed."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One randomly augmented copy of img."""
        cfg = self.config
        out = img
        if rng.random() < cfg.p_flip:
            out = flip(out, horizontal=True)
        if rng.random() < cfg.p_flip:
            out = flip(out, horizontal=False)
        if rng.random() < cfg.p_rotate:
            out = rotate(out, rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        # Drawn only when on, so recipes without zoom keep their random stream (and their releases).
        if cfg.p_zoom > 0 and rng.random() < cfg.p_zoom:
            factor = float(np.exp(rng.uniform(-np.log(cfg.max_zoom), np.log(cfg.max_zoom))))
            h, w = out.shape[:2]
            out = zoom(out, factor, (rng.uniform(0, w - 1), rng.uniform(0, h - 1)))
        if rng.random() < cfg.p_color:
            hue = rng.uniform(-cfg.hue_degrees, cfg.hue_degrees)
            sat = float(np.exp(rng.uniform(*np.log(cfg.saturation))))
            out = hue_saturation(out, hue, sat)
            gains = tuple(float(g) for g in 1 + rng.uniform(-cfg.stain_gain, cfg.stain_gain, 3))
            out = brightness_contrast(out, rng.uniform(*cfg.brightness), rng.uniform(*cfg.contrast), gains)
        if rng.random() < cfg.p_hed:
            out = random_hed_jitter(out, rng, cfg.hed_sigma)
        if rng.random() < cfg.p_equalize:
            out = equalize_histogram(out)
        if rng.random() < cfg.p_grayscale:
            out = grayscale(out)
        if rng.random() < cfg.p_blur:
            out = gaussian_blur(out, rng.uniform(*cfg.blur_sigma))
        if rng.random() < cfg.p_jpeg:
            out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
        return out

    def batch(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment every image of an (N, H, W, 3) uint8 batch independently."""
        return np.stack([self(img, rng) for img in images]) if len(images) else images.copy()
