"""From image bytes or pixels to a stored result: decode, classify, write to the outbox, count."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from contracts.messages import SensorsMessage, to_bytes
from edge_node.images import ImageStore
from edge_node.inference import Prediction, ServingSource
from edge_node.outbox import Outbox
from edge_node.sources.decode import ImageRejected, decode_image

logger = logging.getLogger(__name__)


class NoModelError(RuntimeError):
    """No model is serving yet; the input should be retried later."""


@dataclass(frozen=True)
class Outcome:
    """A stored classification and the message that carries it."""

    message: SensorsMessage
    prediction: Prediction


class ClassificationPipeline:
    """Shared by every source: one place where results become durable before they are published."""

    def __init__(
        self,
        holder: ServingSource,
        outbox: Outbox,
        device_id: str,
        sensors_topic: str,
        max_image_pixels: int,
        on_result: Callable[[Prediction], None] | None = None,
        on_rejected: Callable[[str, str], None] | None = None,
        images: ImageStore | None = None,
    ) -> None:
        self._holder = holder
        self._outbox = outbox
        self._device_id = device_id
        self._topic = sensors_topic
        self.max_image_pixels = max_image_pixels
        self._on_result = on_result
        self._on_rejected = on_rejected
        self._images = images

    def process_bytes(self, data: bytes, source: str, specimen_id: str | None = None) -> Outcome:
        """Decode, classify and store encoded image bytes; raises ImageRejected or NoModelError."""
        try:
            rgb = decode_image(data, self.max_image_pixels)
        except ImageRejected as exc:
            if self._on_rejected is not None:
                self._on_rejected(source, str(exc))
            raise
        sha256 = hashlib.sha256(data).hexdigest()
        outcome = self._classify(rgb, sha256, specimen_id)
        self._keep(sha256, data)
        return outcome

    def process_pixels(self, rgb: np.ndarray) -> Outcome:
        """Classify and store an RGB frame (camera); its hash is over the raw pixels."""
        height, width = rgb.shape[:2]
        if height * width > self.max_image_pixels:
            raise ImageRejected(f"frame is {width}x{height}, over the limit of {self.max_image_pixels} pixels")
        return self._classify(rgb, hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest())

    def _keep(self, sha256: str, data: bytes) -> None:
        """Keep the image for review; a full disk must not lose the result, which is already stored."""
        if self._images is None:
            return
        try:
            self._images.put(sha256, data)
        except OSError as exc:
            logger.warning("could not keep an image for review: %s", exc)

    def _classify(self, rgb: np.ndarray, sha256: str, specimen_id: str | None = None) -> Outcome:
        classifier = self._holder.current()
        if classifier is None:
            raise NoModelError(self._holder.reason or "no model is serving yet")
        prediction = classifier.classify(rgb)
        message = SensorsMessage(
            device=self._device_id,
            sample_id=uuid.uuid4().hex,
            image_sha256=sha256,
            label=prediction.label,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            model_version=prediction.model_version,
            inference_ms=prediction.inference_ms,
            uncertain=prediction.uncertain,
            out_of_distribution=prediction.out_of_distribution,
            ood_score=prediction.ood_score,
            specimen_id=specimen_id,
        )
        self._outbox.put(self._topic, to_bytes(message), qos=1)
        if self._on_result is not None:
            self._on_result(prediction)
        return Outcome(message, prediction)
