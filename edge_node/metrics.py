"""The node's Prometheus metrics: inference latency, results by label, uncertain and OOD counts, outbox, self-test."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edge_node.inference import Prediction

LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class NodeMetrics:
    """Metrics of one node on a registry of its own (several nodes may share a process in tests)."""

    def __init__(self, device_id: str, outbox_depth: Callable[[], int], serving: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"device": device_id}
        self._latency = Histogram(
            "edge_inference_seconds", "Time one inference took", buckets=LATENCY_BUCKETS_S,
            registry=self.registry, labelnames=["device"],
        ).labels(**labels)
        self._results = Counter(
            "edge_results", "Classifications made, by label", ["device", "label"], registry=self.registry
        )
        self._uncertain = Counter("edge_uncertain_results", "Results below the confidence threshold", ["device"],
                                  registry=self.registry).labels(**labels)
        self._ood = Counter("edge_ood_results", "Results flagged out of distribution", ["device"],
                            registry=self.registry).labels(**labels)
        outbox = Gauge("edge_outbox_depth", "Results waiting for the broker's acknowledgement", ["device"],
                       registry=self.registry)
        outbox.labels(**labels).set_function(lambda: float(outbox_depth()))
        selftest = Gauge("edge_selftest_passed", "1 while a model that passed its self-test is serving, else 0",
                         ["device"], registry=self.registry)
        selftest.labels(**labels).set_function(lambda: 1.0 if serving() else 0.0)
        self._device = device_id

    def on_prediction(self, prediction: Prediction) -> None:
        """Count one result."""
        self._latency.observe(prediction.inference_ms / 1000.0)
        self._results.labels(device=self._device, label=prediction.label).inc()
        if prediction.uncertain:
            self._uncertain.inc()
        if prediction.out_of_distribution:
            self._ood.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
