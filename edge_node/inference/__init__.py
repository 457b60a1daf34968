"""Inference behind one Classifier protocol, one module per runtime (imported lazily), and a holder for hot swaps."""

from edge_node.inference.base import (
    OOD_VERDICT,
    Classifier,
    ClassifierBase,
    ModelMismatchError,
    Prediction,
    RuntimeUnavailable,
    UnsupportedPrecision,
)
from edge_node.inference.holder import ModelHolder, ServingSource
from edge_node.inference.registry import load_classifier

__all__ = [
    "OOD_VERDICT",
    "Classifier",
    "ClassifierBase",
    "ModelHolder",
    "ModelMismatchError",
    "Prediction",
    "RuntimeUnavailable",
    "ServingSource",
    "UnsupportedPrecision",
    "load_classifier",
]
