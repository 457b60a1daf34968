"""The node's side of the package self-test: contracts.selftest run on a loaded classifier at its precision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.selftest import SelfTestError, SelfTestResult, run_selftest

if TYPE_CHECKING:
    from edge_node.inference import Classifier
    from edge_node.model_store import InstalledModel

__all__ = ["SelfTestError", "SelfTestResult", "selftest"]


def selftest(classifier: Classifier, model: InstalledModel) -> SelfTestResult:
    """Raise SelfTestError unless the classifier reproduces the package's references at the precision it runs."""
    return run_selftest(classifier.infer_raw, model.path, model.manifest, classifier.precision)
