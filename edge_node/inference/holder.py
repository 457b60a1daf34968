"""A thread-safe reference to the classifier currently serving."""

from __future__ import annotations

import threading

from edge_node.inference.classifier import OpenVinoClassifier


class ModelHolder:
    """Holds the active classifier; callers take a reference and keep it for one inference."""

    def __init__(self, classifier: OpenVinoClassifier | None = None) -> None:
        self._lock = threading.Lock()
        self._classifier = classifier

    def current(self) -> OpenVinoClassifier | None:
        """The classifier serving now, or None before the first model is loaded."""
        with self._lock:
            return self._classifier

    def swap(self, new: OpenVinoClassifier | None) -> OpenVinoClassifier | None:
        """Make new the serving classifier and return the old one (in-flight work keeps using it)."""
        with self._lock:
            old, self._classifier = self._classifier, new
        return old

    @property
    def model_version(self) -> str | None:
        """Version of the serving model, or None."""
        current = self.current()
        return current.model_version if current is not None else None
