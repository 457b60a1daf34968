"""Colour-only baseline: logistic regression on colour histograms, the shortcut the CNN must beat."""

from __future__ import annotations

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

BINS = 32


def colour_features(images: np.ndarray) -> np.ndarray:
    """Normalised RGB and HSV (hue, saturation) histograms of each image; no shape information."""
    rows = []
    for img in images:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
        parts = [cv2.calcHist([img], [c], None, [BINS], [0, 256]).ravel() for c in range(3)]
        parts += [cv2.calcHist([hsv], [c], None, [BINS], [0, 256]).ravel() for c in range(2)]
        feats = np.concatenate(parts)
        rows.append(feats / max(img.shape[0] * img.shape[1], 1))
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 5 * BINS), np.float32)


class ColourBaseline:
    """Fits and applies the colour-histogram classifier."""

    def __init__(self, seed: int = 0) -> None:
        self.pipeline: Pipeline = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=3000, C=1.0, random_state=seed)
        )

    def fit(self, images: np.ndarray, labels: np.ndarray) -> ColourBaseline:
        """Train on uint8 RGB images."""
        self.pipeline.fit(colour_features(images), labels)
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 RGB images, columns in label order 0..n-1."""
        probs = self.pipeline.predict_proba(colour_features(images))
        classes = self.pipeline.classes_
        full = np.zeros((len(images), int(classes.max()) + 1), dtype=np.float32)
        full[:, classes] = probs
        return full
