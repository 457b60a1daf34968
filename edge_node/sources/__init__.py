"""Image sources: a watched folder, POST /Inference, and a camera or video stream."""

from edge_node.sources.decode import ImageRejected, decode_image
from edge_node.sources.pipeline import ClassificationPipeline, NoModelError, Outcome

__all__ = ["ClassificationPipeline", "ImageRejected", "NoModelError", "Outcome", "decode_image"]
