"""Turn a release's metrics into what the page shows: scalar figures and a confusion matrix heat map."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def scalar_metrics(metrics: Any) -> list[tuple[str, str]]:
    """The metrics that are single numbers or short texts, formatted, in key order."""
    if not isinstance(metrics, dict):
        return []
    shown = []
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            shown.append((str(key), f"{value:.4f}"))
        elif isinstance(value, int):
            shown.append((str(key), str(value)))
        elif isinstance(value, str) and len(value) <= 200:
            shown.append((str(key), value))
    return shown
