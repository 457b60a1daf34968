"""Keras-side prediction that runs on any Keras backend (TensorFlow here, PyTorch or JAX on an accelerator)."""

from __future__ import annotations

import keras
import numpy as np


def keras_predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Keras probabilities for uint8 images, fed as float 0-255 like the model expects."""
    outs = [
        keras.ops.convert_to_numpy(model(images[i : i + batch_size].astype(np.float32), training=False))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[-1]), np.float32)
