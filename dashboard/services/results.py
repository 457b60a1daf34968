"""How a result is shown: its verdict, its JSON form (API) and its CSV row (export); the reads are in dashboard.reads."""

from __future__ import annotations

from typing import Any

from dashboard.models import Classification

NEEDS_REVIEW = "needs review: outside what this model was trained on"
CSV_COLUMNS = (
    "id", "sent_at", "received_at", "device_id", "sample_id", "image_sha256", "verdict", "label", "confidence",
    "uncertain", "out_of_distribution", "ood_score", "model_version", "inference_ms", "probabilities",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def verdict(result: Classification) -> str:
    """What a result says: its label, or "needs review" when the input is unlike the training data."""
    return NEEDS_REVIEW if result.out_of_distribution else result.label


def ood_score_text(result: Classification) -> str:
    """The OOD score for a table cell; empty when the model has no detector."""
    return "" if result.ood_score is None else f"{result.ood_score:.4f}"


def csv_safe(value: Any) -> str:
    """Text of a cell, quoted so spreadsheets never run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_row(row: Classification) -> list[str]:
    """A result as CSV cells in CSV_COLUMNS order, each defused against formula injection."""
    values = {
        "id": row.id, "sent_at": row.sent_at.isoformat(), "received_at": row.received_at.isoformat(),
        "device_id": row.device_id, "sample_id": row.sample_id, "image_sha256": row.image_sha256,
        "verdict": verdict(row), "label": row.label, "confidence": f"{row.confidence:.6f}",
        "uncertain": "true" if row.uncertain else "false",
        "out_of_distribution": "true" if row.out_of_distribution else "false", "ood_score": ood_score_text(row),
        "model_version": row.model_version, "inference_ms": f"{row.inference_ms:.3f}",
        "probabilities": ";".join(f"{k}={v:.6f}" for k, v in sorted(row.probabilities.items())),
    }
    return [csv_safe(values[column]) for column in CSV_COLUMNS]


def to_dict(result: Classification) -> dict[str, Any]:
    """A result as JSON-ready data; `verdict` is the label, or "needs review" for an out-of-distribution input."""
    return {
        "message_id": result.message_id, "device": result.device_id, "sample_id": result.sample_id,
        "image_sha256": result.image_sha256, "verdict": verdict(result), "label": result.label,
        "out_of_distribution": bool(result.out_of_distribution), "ood_score": result.ood_score,
        "confidence": result.confidence,
        "probabilities": result.probabilities, "model_version": result.model_version,
        "inference_ms": result.inference_ms, "uncertain": result.uncertain, "sent_at": result.sent_at.isoformat(),
    }
