"""Release metrics: the typed figures the trainer signs into a package's manifest and the dashboard shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Fraction = float
RELEASE_METRICS_VERSION = 1
# Keys older or hand-made manifests used for the same figure.
LEGACY_KEYS = {"accuracy": "test_accuracy", "test_confusion_matrix": "confusion_matrix"}


class _Open(BaseModel):
    """Known fields are typed; unknown ones are kept, so a newer trainer's extra figures survive."""

    model_config = ConfigDict(extra="allow", frozen=True)


class FormatCheck(_Open):
    """One exported runtime's agreement with Keras on the test split."""

    max_abs_diff: float | None = Field(None, ge=0, description="largest probability difference")
    labels_agree: bool | None = Field(
        None, description="every test image gets the same label, except near-ties (top two within the allowed deviation)"
    )
    n_disagree: int | None = Field(None, ge=0, description="images whose label differs, near-ties included")
    n_disagree_on_ties: int | None = Field(None, ge=0, description="of them, near-ties: Keras's top two within the allowed deviation")
    n_images: int | None = Field(None, ge=0)
    ood_max_rel_diff: float | None = Field(None, ge=0)
    ood_flags_differ: int | None = Field(None, ge=0)


class OodFigures(_Open):
    """How the package's out-of-distribution detector did when released."""

    in_distribution_test_flag_rate: Fraction | None = Field(
        None, ge=0, le=1, description="share of in-distribution test images wrongly flagged"
    )
    sets: dict[str, Fraction] = Field(default_factory=dict, description="share flagged per out-of-distribution set")


class ReleaseMetrics(_Open):
    """Test-split figures of a release; every field optional so format-1 packages still read."""

    metrics_version: int = Field(RELEASE_METRICS_VERSION, ge=1, description="version of this schema")
    split: str | None = Field(None, description="which data the figures come from")
    test_accuracy: Fraction | None = Field(None, ge=0, le=1)
    macro_recall: Fraction | None = Field(None, ge=0, le=1)
    per_class_recall: dict[str, Fraction] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = Field(None, description="rows: true class, columns: predicted class")
    ece: float | None = Field(None, ge=0, le=1, description="expected calibration error")
    n_test_images: int | None = Field(None, ge=0)
    colour_baseline_accuracy: Fraction | None = Field(None, ge=0, le=1)
    robustness: dict[str, dict[str, Fraction]] = Field(
        default_factory=dict, description="accuracy per perturbation, per model (CNN and colour baseline)"
    )
    formats_vs_keras: dict[str, FormatCheck] = Field(default_factory=dict)
    ood: OodFigures | None = None
    cross_validation: dict[str, Any] | None = None
    train_seconds: float | None = Field(None, ge=0)
    epochs_run: int | None = Field(None, ge=0)

    def to_manifest(self) -> dict[str, Any]:
        """The dict signed into Manifest.metrics (JSON types, no empty fields)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_manifest(cls, raw: Mapping[str, Any] | None) -> "ReleaseMetrics":
        """Read a manifest's metrics leniently: legacy keys renamed, fields that do not validate dropped."""
        data = {LEGACY_KEYS.get(str(k), str(k)): v for k, v in (raw or {}).items()}
        for _ in range(len(data) + 1):
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
                if not bad & data.keys():
                    break
                data = {k: v for k, v in data.items() if k not in bad}
        return cls()

    def matrix_for(self, classes: Sequence[str]) -> list[list[int]] | None:
        """The confusion matrix when it is square over classes, else None."""
        rows = self.confusion_matrix
        if not rows or len(rows) != len(classes) or any(len(row) != len(classes) for row in rows):
            return None
        return rows

    def extras(self) -> dict[str, Any]:
        """Figures this schema does not know (from a newer trainer), by key."""
        return dict(self.model_extra or {})
