"""The specimen verdict: how the fields of view of one smear add up, shared by the dashboard and the classify CLI.

The rule (documented in docs/specimens.md):

1. A field is *usable* when it is neither uncertain nor out of distribution; a field a reviewer has labelled is
   usable with the reviewer's label, whatever the model said.
2. A usable field is *confidently malignant* when its label is not a benign class and its confidence is at
   least `min_confidence` (a reviewer's label counts as confidence 1).
3. Fewer than `min_usable_fields` usable fields: **insufficient**. Otherwise at least `min_malignant_fields`
   confidently malignant fields: **suspicious**; else **not suspicious**.

The verdict comes from a research tool: it is never a diagnosis.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


SPECIMEN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def is_specimen_id(value: str) -> bool:
    """Whether value is an opaque specimen id the contract accepts."""
    return bool(SPECIMEN_ID.fullmatch(value)) and value not in (".", "..")


class Verdict(StrEnum):
    """What a specimen's fields add up to."""

    SUSPICIOUS = "suspicious"
    NOT_SUSPICIOUS = "not suspicious"
    INSUFFICIENT = "insufficient"


class SpecimenRule(BaseModel):
    """Thresholds of the specimen rule (confs.json dashboard.specimens)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    min_usable_fields: int = Field(5, ge=1, description="fewer usable fields (certain, in distribution) make a specimen insufficient")
    min_malignant_fields: int = Field(2, ge=1, description="this many confidently malignant usable fields make a specimen suspicious")
    min_confidence: float = Field(0.8, ge=0, le=1, description="confidence a malignant field needs to count")
    benign_classes: list[str] = Field(default_factory=lambda: ["Benign"], description="classes that are not malignant")
    final_after_s: float = Field(600.0, gt=0, description="a specimen with no new field for this long has a final verdict")


@dataclass(frozen=True)
class FieldOfView:
    """One field of view as the rule sees it."""

    label: str
    confidence: float
    probabilities: Mapping[str, float]
    uncertain: bool
    out_of_distribution: bool
    reviewed_label: str | None = None


@dataclass(frozen=True)
class SpecimenVerdict:
    """The verdict and the figures behind it."""

    verdict: Verdict
    fields: int
    usable: int
    uncertain: int
    out_of_distribution: int
    malignant: int
    reviewed: int
    distribution: dict[str, int] = field(default_factory=dict)
    mean_probabilities: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return {
            "verdict": self.verdict.value, "fields": self.fields, "usable": self.usable, "uncertain": self.uncertain,
            "out_of_distribution": self.out_of_distribution, "malignant": self.malignant, "reviewed": self.reviewed,
            "distribution": dict(self.distribution), "mean_probabilities": dict(self.mean_probabilities),
        }


def aggregate(fields: Iterable[FieldOfView], rule: SpecimenRule) -> SpecimenVerdict:
    """Apply the rule to a specimen's fields."""
    items = list(fields)
    benign = set(rule.benign_classes)
    usable_labels: list[str] = []
    sums: Counter[str] = Counter()
    malignant = reviewed = 0
    for item in items:
        if item.reviewed_label is not None:
            reviewed += 1
            label, confidence = item.reviewed_label, 1.0
        elif item.uncertain or item.out_of_distribution:
            continue
        else:
            label, confidence = item.label, item.confidence
        usable_labels.append(label)
        for name, p in item.probabilities.items():
            sums[name] += p
        if label not in benign and confidence >= rule.min_confidence:
            malignant += 1
    usable = len(usable_labels)
    if usable < rule.min_usable_fields:
        verdict = Verdict.INSUFFICIENT
    elif malignant >= rule.min_malignant_fields:
        verdict = Verdict.SUSPICIOUS
    else:
        verdict = Verdict.NOT_SUSPICIOUS
    return SpecimenVerdict(
        verdict=verdict, fields=len(items), usable=usable,
        uncertain=sum(1 for i in items if i.uncertain),
        out_of_distribution=sum(1 for i in items if i.out_of_distribution),
        malignant=malignant, reviewed=reviewed, distribution=dict(sorted(Counter(usable_labels).items())),
        mean_probabilities={k: round(v / usable, 6) for k, v in sorted(sums.items())} if usable else {},
    )
