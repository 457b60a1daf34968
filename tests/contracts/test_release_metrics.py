"""Release metrics: typed on write, lenient on read (legacy keys, bad fields dropped, newer keys kept)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.release_metrics import OodFigures, ReleaseMetrics


def test_trainer_metrics_round_trip_through_the_manifest_dict() -> None:
    written = ReleaseMetrics(
        test_accuracy=0.95, macro_recall=0.9, per_class_recall={"A": 1.0, "B": 0.8}, confusion_matrix=[[5, 0], [1, 4]],
        ece=0.02, n_test_images=10, ood=OodFigures(in_distribution_test_flag_rate=0.01, sets={"noise": 1.0}),
        formats_vs_keras={"openvino": {"max_abs_diff": 1e-4, "labels_agree": True, "n_disagree": 0, "n_images": 10}},
    ).to_manifest()
    assert written["test_accuracy"] == 0.95 and "colour_baseline_accuracy" not in written
    read = ReleaseMetrics.from_manifest(written)
    assert read.matrix_for(["A", "B"]) == [[5, 0], [1, 4]] and read.matrix_for(["A", "B", "C"]) is None
    assert read.ood is not None and read.ood.sets == {"noise": 1.0}
    assert read.formats_vs_keras["openvino"].labels_agree is True


def test_writing_refuses_figures_out_of_range() -> None:
    with pytest.raises(ValidationError):
        ReleaseMetrics(test_accuracy=1.5)


def test_reading_renames_legacy_keys_drops_bad_fields_and_keeps_new_ones() -> None:
    read = ReleaseMetrics.from_manifest(
        {"accuracy": 0.9, "ece": "not a number", "int8": "rejected", "future_figure": 3, "per_class_recall": {"A": 0.5}}
    )
    assert read.test_accuracy == 0.9 and read.ece is None and read.per_class_recall == {"A": 0.5}
    assert read.extras() == {"int8": "rejected", "future_figure": 3}
    assert ReleaseMetrics.from_manifest(None) == ReleaseMetrics()
