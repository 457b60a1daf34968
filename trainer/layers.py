"""Preprocessing layers that live inside the model, so the edge feeds raw 0-255 RGB pixels."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from trainer.augment import SCALE_BAR_HEIGHT, SCALE_BAR_WIDTH

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV and Pillow use


@keras.saving.register_keras_serializable(package="trainer")
class ScaleBarMask(keras.layers.Layer):
    """Replaces the bottom-right scale-bar corner with the image's mean colour."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Precompute the constant corner mask for this input size."""
        import numpy as np

        height, width = int(input_shape[1]), int(input_shape[2])
        mask = np.ones((1, height, width, 1), dtype="float32")
        mask[:, height - round(height * SCALE_BAR_HEIGHT) :, width - round(width * SCALE_BAR_WIDTH) :] = 0.0
        # Kept as numpy: a tensor made here would be captured as an extra graph input by ONNX export.
        self.mask = mask

    def call(self, x: Any) -> Any:
        """x * mask + mean colour * (1 - mask)."""
        mask = ops.convert_to_tensor(self.mask, dtype=x.dtype)
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        return x * mask + mean * (1.0 - mask)


@keras.saving.register_keras_serializable(package="trainer")
class ToGray(keras.layers.Layer):
    """RGB to one luminance channel (ITU-R BT.601 weights, as OpenCV and Pillow use)."""

    def call(self, x: Any) -> Any:
        """Weighted channel sum, keeping a channel axis of 1."""
        weights = ops.convert_to_tensor([[w] for w in LUMA], dtype=x.dtype)
        return ops.matmul(x, weights)


@keras.saving.register_keras_serializable(package="trainer")
class ImageStandardize(keras.layers.Layer):
    """Per-image standardisation: removes global brightness and contrast, which differ between labs."""

    def __init__(self, epsilon: float = 1.0 / 255.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x: Any) -> Any:
        """(x - per-channel mean) / overall standard deviation of each image."""
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        centred = x - mean
        std = ops.sqrt(ops.mean(ops.square(centred), axis=(1, 2, 3), keepdims=True))
        return centred / ops.maximum(std, self.epsilon)

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="trainer")
class MixStyle(keras.layers.Layer):
    """Training only: mixes each image's feature statistics with another image's in the batch (Zhou et al. 2021).

    Channel means and standard deviations of early feature maps carry a slide's stain and acquisition style;
    mixing them between the patients of a batch trains the later layers to ignore style. Identity at inference.
    """

    def __init__(self, probability: float = 0.5, alpha: float = 0.1, epsilon: float = 1e-6,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probability, self.alpha, self.epsilon, self.seed = probability, alpha, epsilon, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool | None = None) -> Any:
        """Mixed statistics with `probability` per batch while training; the input unchanged otherwise."""
        if not training or self.probability <= 0:
            return x
        mean = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
        std = ops.stop_gradient(ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + self.epsilon))
        batch = ops.shape(x)[0]
        weight = keras.random.beta((batch, 1, 1, 1), self.alpha, self.alpha, seed=self.seed_generator)
        partner = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        mixed_mean = weight * mean + (1.0 - weight) * ops.take(mean, partner, axis=0)
        mixed_std = weight * std + (1.0 - weight) * ops.take(std, partner, axis=0)
        mixed = (x - mean) / std * mixed_std + mixed_mean
        return ops.where(keras.random.uniform((), seed=self.seed_generator) < self.probability, mixed, x)

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "probability": self.probability, "alpha": self.alpha,
                "epsilon": self.epsilon, "seed": self.seed}
