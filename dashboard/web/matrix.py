"""Turn a release's typed metrics into what the pages show: figures, per-class recall, OOD and a confusion matrix heat map."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.release_metrics import FormatCheck, ReleaseMetrics

HEAT_LEVELS = 5


@dataclass(frozen=True)
class Cell:
    """One matrix cell: its count and a heat level 0..HEAT_LEVELS."""

    value: int
    level: int


@dataclass(frozen=True)
class MatrixRow:
    """One true class and its predicted-class cells."""

    label: str
    cells: list[Cell]


@dataclass(frozen=True)
class Matrix:
    """A square confusion matrix ready for a table."""

    classes: list[str]
    rows: list[MatrixRow]


def confusion_matrix(raw: Any, classes: list[str]) -> Matrix | None:
    """A Matrix from a list of rows of counts, or None when raw is missing or not square over classes."""
    if not isinstance(raw, list) or not raw or not all(isinstance(row, list) for row in raw):
        return None
    size = len(raw)
    if any(len(row) != size for row in raw):
        return None
    try:
        counts = [[int(value) for value in row] for row in raw]
    except (TypeError, ValueError):
        return None
    labels = [str(c) for c in classes] if len(classes) == size else [str(i) for i in range(size)]
    top = max((v for row in counts for v in row), default=0)
    rows = []
    for label, row in zip(labels, counts):
        cells = [Cell(v, 0 if top <= 0 or v <= 0 else max(1, round(HEAT_LEVELS * v / top))) for v in row]
        rows.append(MatrixRow(label, cells))
    return Matrix(labels, rows)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _differ(count: int, what: str = "") -> str:
    """'1 near-tie differs', '2 near-ties differ'."""
    noun = f" {what}{'s' if count != 1 else ''}" if what else ""
    return f"{count}{noun} {'differs' if count == 1 else 'differ'}"


def _tie_note(check: FormatCheck) -> str:
    ties = check.n_disagree_on_ties or 0
    return f" ({_differ(ties, 'near-tie')})" if ties else ""


def accuracy_text(raw: Any) -> str:
    """A release's held-out accuracy as a percentage, whatever key its trainer used; a dash when absent."""
    return _pct(ReleaseMetrics.from_manifest(raw if isinstance(raw, dict) else None).test_accuracy)


@dataclass(frozen=True)
class ReleaseFigures:
    """What the release page shows of its typed metrics."""

    headline: list[tuple[str, str]]
    per_class: list[tuple[str, str]]
    ood: list[tuple[str, str]]
    formats: list[tuple[str, str, str]]
    robustness: list[tuple[str, str, str]]
    other: list[tuple[str, str]]


def release_figures(raw: Any) -> ReleaseFigures:
    """Typed metrics of a manifest turned into labelled, formatted rows."""
    m = ReleaseMetrics.from_manifest(raw if isinstance(raw, dict) else None)
    headline = [
        ("Held-out accuracy", _pct(m.test_accuracy)), ("Macro recall", _pct(m.macro_recall)),
        ("Colour-only baseline accuracy", _pct(m.colour_baseline_accuracy)),
        ("Calibration error (ECE)", "—" if m.ece is None else f"{m.ece:.3f}"),
        ("Held-out images", "—" if m.n_test_images is None else str(m.n_test_images)),
        ("Epochs run", "—" if m.epochs_run is None else str(m.epochs_run)),
        ("Training time", "—" if m.train_seconds is None else f"{m.train_seconds / 60:.1f} min"),
        ("Evaluated on", m.split or "—"),
    ]
    ood = []
    if m.ood is not None:
        ood.append(("In-distribution held-out images flagged", _pct(m.ood.in_distribution_test_flag_rate)))
        ood += [(f"{name} flagged", _pct(share)) for name, share in sorted(m.ood.sets.items())]
    formats = [
        (name, "—" if c.max_abs_diff is None else f"{c.max_abs_diff:.1e}",
         "—" if c.labels_agree is None else (f"yes{_tie_note(c)}" if c.labels_agree else f"no ({_differ(c.n_disagree or 0)})"))
        for name, c in sorted(m.formats_vs_keras.items())
    ]
    robustness = [
        (name, _pct(scores.get("CNN")), _pct(scores.get("colour baseline"))) for name, scores in sorted(m.robustness.items())
    ]
    other = [(key, str(value)) for key, value in sorted(m.extras().items())
             if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(str(value)) <= 200]
    return ReleaseFigures(
        [row for row in headline if row[1] != "—"],
        [(label, _pct(value)) for label, value in m.per_class_recall.items()], ood, formats, robustness, other,
    )
