"""Stain gate: flags fields stained far more intensely than any training slide.

The model standardises every image, so its features barely see how dark the stain is; an over-stained
slide therefore looks in-distribution to the feature detector. The gate measures the spread of optical
density of two brightness channels, V = max(R, G, B) and luma Y: multiplying stain concentration scales
both, while brightness (an additive OD shift) changes neither, saturation keeps V and grey conversion
keeps Y. A field is flagged only when both spreads exceed their training quantile. Every other pixel of
every other row is enough for the spread and halves the gate's cost on the node.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from trainer.augment import mask_scale_bar
from trainer.layers import LUMA

STEP = 2


def stain_spread(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, 2): standard deviation of the OD of V and of Y, scale bar masked."""
    out = np.zeros((len(images), 2), np.float64)
    for i, image in enumerate(images):
        pixels = mask_scale_bar(image)[::STEP, ::STEP].astype(np.float64)
        for c, channel in enumerate((pixels.max(axis=-1), pixels @ np.array(LUMA))):
            out[i, c] = (-np.log((channel + 1.0) / 256.0)).std()
    return out


def fit_stain_limits(images: np.ndarray, quantile: float) -> np.ndarray:
    """Per-channel spread limits: `quantile` of the spreads of in-distribution images."""
    if len(images) == 0:
        raise ValueError("the stain gate needs at least one image to fit")
    return np.quantile(stain_spread(images), quantile, axis=0).astype(np.float32)


def spread_ratios(spreads: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """How far each (N, 2) spread is over the limits: min over channels of spread / limit (above 1 = flagged)."""
    return (np.asarray(spreads, np.float64) / np.asarray(limits, np.float64)).min(axis=1)


def stain_ratios(images: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """How far each image is over the limits (above 1 = flagged)."""
    return spread_ratios(stain_spread(images), limits).astype(np.float32)


def combined_scores(feature_scores: np.ndarray, ratios: np.ndarray, threshold: float) -> np.ndarray:
    """The shipped OOD score: the feature score, or the stain ratio in threshold units when larger."""
    return np.maximum(feature_scores, threshold * ratios).astype(np.float32)


@keras.saving.register_keras_serializable(package="trainer")
class StainSpreadRatio(layers.Layer):
    """Float 0-255 RGB (scale bar masked) → min over V and Y of OD standard deviation / limit."""

    def __init__(self, limits: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = np.asarray(limits, np.float32).reshape(2)

    def _spread(self, channel: Any) -> Any:
        density = -ops.log((channel + 1.0) / 256.0)
        centred = density - ops.mean(density, axis=(1, 2), keepdims=True)
        # Mean of squared deviations, not E[x²] - E[x]²: reduced precision would cancel the two terms.
        return ops.sqrt(ops.mean(ops.square(centred), axis=(1, 2)))

    def call(self, pixels: Any) -> Any:
        """Both spreads over their limits; the smaller of the two."""
        pixels = pixels[:, ::STEP, ::STEP, :]
        value = ops.max(pixels, axis=-1)
        luma = ops.sum(pixels * ops.convert_to_tensor(np.array(LUMA, np.float32)), axis=-1)
        limits = self.limits.tolist()
        return ops.minimum(self._spread(value) / limits[0], self._spread(luma) / limits[1])

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "limits": self.limits.tolist()}


@keras.saving.register_keras_serializable(package="trainer")
class LargerScore(layers.Layer):
    """max(feature score, threshold × stain ratio): one score, one threshold for every runtime."""

    def __init__(self, threshold: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def call(self, feature_score: Any, ratio: Any) -> Any:
        """The larger of the two, in the feature score's units."""
        return ops.maximum(feature_score, ratio * self.threshold)

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "threshold": self.threshold}
