"""Exported formats against Keras: a label flip on a near-tie is counted, any other flip refuses the package."""

from __future__ import annotations

import numpy as np

from contracts.release_metrics import FormatCheck
from contracts.selftest import RawOutputs
from dashboard.web.matrix import _differ, _tie_note
from trainer.release import MAX_PROBABILITY_DIFF, agreement


def _probs(*rows: tuple[float, ...]) -> np.ndarray:
    return np.array(rows, np.float32)


def test_a_flip_on_a_near_tie_is_counted_but_labels_still_agree() -> None:
    keras = _probs((0.5023, 0.4977, 0, 0), (0.9, 0.1, 0, 0))
    exported = _probs((0.4991, 0.5009, 0, 0), (0.9, 0.1, 0, 0))
    check = agreement((keras, np.ones(2, np.float32)), RawOutputs(exported, np.ones(2, np.float32)), 1.0)
    assert check["labels_agree"] is True and check["n_disagree"] == 1 and check["n_disagree_on_ties"] == 1
    assert _tie_note(FormatCheck(**check)) == " (1 near-tie differs)"
    assert _tie_note(FormatCheck(**{**check, "n_disagree": 2, "n_disagree_on_ties": 2})) == " (2 near-ties differ)"


def test_a_flip_outside_a_tie_refuses() -> None:
    gap = MAX_PROBABILITY_DIFF * 2
    keras = _probs((0.5 + gap / 2, 0.5 - gap / 2, 0, 0))
    exported = _probs((0.49, 0.51, 0, 0))
    check = agreement((keras, np.ones(1, np.float32)), RawOutputs(exported, np.ones(1, np.float32)), 1.0)
    assert check["labels_agree"] is False and check["n_disagree"] == 1 and check["n_disagree_on_ties"] == 0
    assert _tie_note(FormatCheck(**check)) == ""


def test_no_images_agree_trivially() -> None:
    empty = np.zeros((0, 4), np.float32)
    check = agreement((empty, np.zeros(0, np.float32)), RawOutputs(empty, np.zeros(0, np.float32)), 1.0)
    assert check["labels_agree"] is True and check["n_disagree"] == 0 and check["n_images"] == 0


def test_refusal_counts_read_as_sentences() -> None:
    assert (_differ(1), _differ(3), _differ(0, "near-tie")) == ("1 differs", "3 differ", "0 near-ties differ")
