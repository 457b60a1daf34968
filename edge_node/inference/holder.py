"""A thread-safe reference to the classifier currently serving, and why none serves when none does."""

from __future__ import annotations

import threading
from typing import Protocol

from edge_node.inference.base import Classifier

NO_MODEL_YET = "no model is installed yet"


class ServingSource(Protocol):
    """What the pipeline needs: the classifier serving now, or the reason there is none."""

    def current(self) -> Classifier | None: ...

    @property
    def reason(self) -> str | None: ...


class ModelHolder:
    """Holds the active classifier; callers take a reference and keep it for one inference."""

    def __init__(self, classifier: Classifier | None = None) -> None:
        self._lock = threading.Lock()
        self._classifier = classifier
        self._reason: str | None = None

    def current(self) -> Classifier | None:
        """The classifier serving now, or None before the first model is loaded."""
        with self._lock:
            return self._classifier

    def swap(self, new: Classifier | None) -> Classifier | None:
        """Make new the serving classifier and return the old one (in-flight work keeps using it)."""
        with self._lock:
            old, self._classifier = self._classifier, new
            if new is not None:
                self._reason = None
        return old

    def mark_unavailable(self, reason: str) -> None:
        """Record why no model can serve (shown in Status and HTTP 503 answers while none does)."""
        with self._lock:
            self._reason = reason

    @property
    def reason(self) -> str | None:
        """Why nothing serves; None while a model serves."""
        with self._lock:
            if self._classifier is not None:
                return None
            return self._reason or NO_MODEL_YET

    @property
    def model_version(self) -> str | None:
        """Version of the serving model, or None."""
        current = self.current()
        return current.model_version if current is not None else None

    def serving_info(self) -> dict[str, str | None]:
        """runtime, inference_device and precision of the serving model (all None while none serves)."""
        current = self.current()
        if current is None:
            return {"runtime": None, "inference_device": None, "precision": None}
        return {"runtime": current.runtime, "inference_device": current.device[:64], "precision": current.precision}
