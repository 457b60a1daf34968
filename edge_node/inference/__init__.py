"""OpenVINO inference: a classifier loaded from a model package, and a holder for hot swaps."""

from edge_node.inference.classifier import ModelMismatchError, OpenVinoClassifier, Prediction
from edge_node.inference.holder import ModelHolder

__all__ = ["ModelHolder", "ModelMismatchError", "OpenVinoClassifier", "Prediction"]
