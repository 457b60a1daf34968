"""Out-of-distribution detector: class-conditional Mahalanobis distance on pooled activations of several blocks.

Fitted on the training images (clean and augmented), with one covariance shared by the classes (Lee et
al. 2018) shrunk by Ledoit-Wolf; the threshold is a high quantile of held-out in-distribution scores.
The score is computed inside the exported model, so every runtime on the node applies it; when the fit
carries stain limits, the stain gate (trainer.stain_gate) is folded into the same score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from trainer.stain_gate import LargerScore, StainSpreadRatio

log = logging.getLogger(__name__)

FEATURE_LAYERS = ("block2_relu", "block3b_relu", "block4b_relu")
OOD_OUTPUT = "ood_score"


@dataclass(frozen=True)
class MahalanobisFit:
    """Class means and the whitening transform L (precision = L Lᵀ), both in feature space; optional stain limits."""

    means: np.ndarray
    transform: np.ndarray
    threshold: float = 0.0
    stain_limits: np.ndarray | None = None

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Smallest class distance of each feature row, divided by the feature dimension."""
        z = features.astype(np.float64) @ self.transform
        centres = self.means.astype(np.float64) @ self.transform
        distances = ((z[:, None, :] - centres[None]) ** 2).sum(-1)
        return (distances.min(axis=1) / features.shape[1]).astype(np.float32)

    def save(self, path: Path) -> None:
        """Keep the fitted statistics beside the run."""
        stain = {} if self.stain_limits is None else {"stain_limits": self.stain_limits}
        np.savez(path, means=self.means, transform=self.transform, threshold=np.float64(self.threshold), **stain)

    @classmethod
    def load(cls, path: Path) -> MahalanobisFit:
        """Read statistics saved by `save`."""
        with np.load(path) as data:
            stain = data["stain_limits"] if "stain_limits" in data.files else None
            return cls(data["means"], data["transform"], float(data["threshold"]), stain)


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, n_classes: int) -> MahalanobisFit:
    """Class means and a shared, shrunk covariance of the features."""
    from sklearn.covariance import LedoitWolf

    means = np.stack([features[labels == c].mean(axis=0) for c in range(n_classes)])
    centred = features - means[labels]
    covariance = LedoitWolf().fit(centred).covariance_
    precision = np.linalg.inv(covariance)
    transform = np.linalg.cholesky((precision + precision.T) / 2)
    return MahalanobisFit(means.astype(np.float32), transform.astype(np.float32))


def with_threshold(fit: MahalanobisFit, held_out_scores: np.ndarray, quantile: float, margin: float = 1.0) -> MahalanobisFit:
    """The fit with its threshold at `margin` × the `quantile` of in-distribution scores never used for fitting."""
    return replace(fit, threshold=margin * float(np.quantile(held_out_scores, quantile)))


def _core_with_features(model: keras.Model) -> keras.Model:
    """The model's core returning [probabilities, pooled features of FEATURE_LAYERS]."""
    core = model.get_layer("core")
    pooled = [layers.GlobalAveragePooling2D(name=f"ood_pool_{n}")(core.get_layer(n).output) for n in FEATURE_LAYERS]
    features = layers.Concatenate(name="ood_features")(pooled)
    return keras.Model(core.inputs, [core.outputs[0], features], name="core_with_features")


def _masked(model: keras.Model, x: Any) -> Any:
    """Apply the deployable model's scale-bar mask, when it has one."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("scale_bar_mask")(x) if "scale_bar_mask" in names else x


def feature_model(model: keras.Model) -> keras.Model:
    """Float 0-255 RGB images → (probabilities, features) of the trained deployable model."""
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    probabilities, features = _core_with_features(model)(_masked(model, inputs))
    return keras.Model(inputs, [probabilities, features], name="with_features")


def predict_features(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and features of uint8 images."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[0][-1]), np.float32), np.zeros((0, model.output_shape[1][-1]), np.float32)
    probs, feats = [], []
    for i in range(0, len(images), batch_size):
        p, f = model(images[i : i + batch_size].astype(np.float32), training=False)
        probs.append(ops.convert_to_numpy(p))
        feats.append(ops.convert_to_numpy(f))
    return np.concatenate(probs), np.concatenate(feats)


@keras.saving.register_keras_serializable(package="trainer")
class ToFloat(layers.Layer):
    """uint8 pixels to float32, so every runtime takes the same raw uint8 input."""

    def call(self, x: Any) -> Any:
        """Cast to float32."""
        return ops.cast(x, "float32")


@keras.saving.register_keras_serializable(package="trainer")
class MahalanobisScore(layers.Layer):
    """Smallest class Mahalanobis distance per image, divided by the feature dimension."""

    def __init__(self, means: Any, transform: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transform = np.asarray(transform, np.float32)
        self.centres = (np.asarray(means, np.float32) @ self.transform).astype(np.float32)

    def call(self, features: Any) -> Any:
        """||f L - μ_c L||² minimised over classes, over D."""
        z = ops.matmul(features, ops.convert_to_tensor(self.transform))
        # The direct difference, not the expanded square: reduced precision would cancel |z|² against |c|².
        differences = z[:, None, :] - ops.convert_to_tensor(self.centres)[None, :, :]
        distances = ops.sum(ops.square(differences), axis=-1)
        return ops.min(distances, axis=-1) / float(self.transform.shape[0])

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration (statistics as lists)."""
        means = self.centres @ np.linalg.inv(self.transform)
        return {**super().get_config(), "means": means.tolist(), "transform": self.transform.tolist()}


def deployable(model: keras.Model, fit: MahalanobisFit | None) -> keras.Model:
    """uint8 NHWC `image` → {"probabilities", "ood_score"}: the model every runtime receives."""
    size = model.input_shape[1:]
    inputs = keras.Input(shape=size, dtype="uint8", name="image")
    pixels = ToFloat(name="to_float")(inputs)
    masked = _masked(model, pixels)
    probabilities, features = _core_with_features(model)(masked)
    outputs = {"probabilities": layers.Identity(name="probabilities")(probabilities)}
    if fit is not None and fit.stain_limits is None:
        outputs[OOD_OUTPUT] = MahalanobisScore(fit.means, fit.transform, name=OOD_OUTPUT)(features)
    elif fit is not None:
        feature_score = MahalanobisScore(fit.means, fit.transform, name="feature_score")(features)
        ratio = StainSpreadRatio(fit.stain_limits, name="stain_ratio")(masked)
        outputs[OOD_OUTPUT] = LargerScore(fit.threshold, name=OOD_OUTPUT)(feature_score, ratio)
    return keras.Model(inputs, outputs, name="deployable")


def deployable_predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and OOD scores of the deployable Keras model for uint8 images."""
    probs, scores = [], []
    for i in range(0, len(images), batch_size):
        out = model(images[i : i + batch_size], training=False)
        probs.append(ops.convert_to_numpy(out["probabilities"]))
        scores.append(ops.convert_to_numpy(out[OOD_OUTPUT]).reshape(-1) if OOD_OUTPUT in out else np.zeros(len(out["probabilities"])))
    return np.concatenate(probs), np.concatenate(scores).astype(np.float32)
