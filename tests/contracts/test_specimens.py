"""The specimen rule on fixtures: insufficient, suspicious, not suspicious; reviewers' labels count."""

from __future__ import annotations

import pytest

from contracts.messages import SensorsMessage
from contracts.specimens import FieldOfView, SpecimenRule, Verdict, aggregate, is_specimen_id

RULE = SpecimenRule(min_usable_fields=5, min_malignant_fields=2, min_confidence=0.8, benign_classes=["Benign"])


def fov(label: str, confidence: float = 0.95, uncertain: bool = False, ood: bool = False, reviewed: str | None = None) -> FieldOfView:
    rest = (1 - confidence) / 3
    probabilities = {c: (confidence if c == label else rest) for c in ("Benign", "Early", "Pre", "Pro")}
    return FieldOfView(label, confidence, probabilities, uncertain, ood, reviewed)


def test_below_the_minimum_of_usable_fields_is_insufficient_whatever_they_say():
    fields = [fov("Pre")] * 4 + [fov("Pro", 0.5, uncertain=True), fov("Early", ood=True)]
    result = aggregate(fields, RULE)
    assert result.verdict is Verdict.INSUFFICIENT
    assert (result.fields, result.usable, result.uncertain, result.out_of_distribution) == (6, 4, 1, 1)


def test_k_confidently_malignant_fields_make_a_specimen_suspicious():
    result = aggregate([fov("Benign")] * 4 + [fov("Pre"), fov("Pro", 0.85)], RULE)
    assert result.verdict is Verdict.SUSPICIOUS and result.malignant == 2
    assert result.distribution == {"Benign": 4, "Pre": 1, "Pro": 1}
    assert sum(result.mean_probabilities.values()) == pytest.approx(1.0)


def test_malignant_labels_below_the_confidence_bar_do_not_count():
    # 0.79 is certain enough for the node (not flagged uncertain) but below the specimen rule's bar.
    result = aggregate([fov("Benign")] * 5 + [fov("Pre"), fov("Pro", 0.79)], RULE)
    assert result.verdict is Verdict.NOT_SUSPICIOUS and result.malignant == 1


def test_uncertain_and_ood_fields_are_not_usable_but_counted():
    fields = [fov("Benign")] * 5 + [fov("Pre", 0.6, uncertain=True)] * 3 + [fov("Pro", ood=True)] * 2
    result = aggregate(fields, RULE)
    assert result.verdict is Verdict.NOT_SUSPICIOUS
    assert (result.usable, result.uncertain, result.out_of_distribution, result.malignant) == (5, 3, 2, 0)


def test_a_reviewers_label_replaces_the_models_and_makes_the_field_usable():
    fields = [fov("Benign")] * 4 + [fov("Pre", 0.6, uncertain=True, reviewed="Pre"), fov("Pro", ood=True, reviewed="Pro")]
    result = aggregate(fields, RULE)
    assert result.verdict is Verdict.SUSPICIOUS and result.reviewed == 2 and result.usable == 6


def test_specimen_ids_are_opaque_identifiers_on_the_wire():
    assert is_specimen_id("SP-2025.001_a") and not is_specimen_id("Doe, Jane") and not is_specimen_id("..")
    base = {"device": "n1", "sample_id": "s", "image_sha256": "0" * 64, "label": "Pre", "confidence": 0.9,
            "probabilities": {"Pre": 0.9, "Pro": 0.1}, "model_version": "1.0.0", "inference_ms": 1.0, "uncertain": False}
    assert SensorsMessage(**base, specimen_id="SP-1").specimen_id == "SP-1"
    assert SensorsMessage(**base).specimen_id is None
    with pytest.raises(ValueError):
        SensorsMessage(**base, specimen_id="Jane Doe")
