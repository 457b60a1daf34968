"""Reviewed labels as a folder-per-class dataset with a manifest, for `python -m trainer index` and `make train`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Classification, Review, utcnow
from dashboard.services.node_images import ImageUnavailable, NodeImages

MANIFEST = "manifest.json"
FORMAT = "all-edge-reviewed-labels/1"
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/bmp": ".bmp", "image/tiff": ".tif", "image/webp": ".webp"}


@dataclass
class ExportReport:
    """What an export wrote and what it could not get."""

    written: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)


def export_reviewed(session: Session, images: NodeImages, out_dir: Path) -> ExportReport:
    """Write every reviewed result's image under out_dir/<reviewed label>/<sha256><suffix>, then manifest.json.

    Images come from the nodes that still keep them; the rest are listed in the manifest as missing.
    A fetched image whose bytes do not hash to the result's sha256 is refused (camera frames hash raw pixels).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    seen: set[tuple[str, str]] = set()
    rows = session.execute(
        select(Review, Classification).join(Classification, Review.classification_id == Classification.id).order_by(Review.id)
    )
    for review, result in rows:
        entry = {
            "sha256": result.image_sha256, "label": review.label, "model_label": result.label, "agrees": review.agrees,
            "device": result.device_id, "model_version": result.model_version, "reviewer": review.reviewer,
            "reviewed_at": review.reviewed_at.isoformat(), "result_id": result.id,
        }
        if (review.label, result.image_sha256) in seen:
            continue
        try:
            image = images.fetch(result.device_id, result.image_sha256)
        except ImageUnavailable as exc:
            report.missing.append(entry | {"reason": str(exc)})
            continue
        if hashlib.sha256(image.data).hexdigest() != result.image_sha256:
            report.missing.append(entry | {"reason": "the node's bytes do not match the result's sha256"})
            continue
        folder = out_dir / review.label
        folder.mkdir(exist_ok=True)
        path = folder / (result.image_sha256 + SUFFIXES.get(image.content_type, ".png"))
        path.write_bytes(image.data)
        seen.add((review.label, result.image_sha256))
        report.written.append(entry | {"path": str(path.relative_to(out_dir))})
    manifest = {
        "format": FORMAT, "created_at": utcnow().isoformat(), "images": report.written, "missing": report.missing,
        "classes": sorted({e["label"] for e in report.written}),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return report
