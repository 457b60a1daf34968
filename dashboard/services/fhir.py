"""A specimen verdict as an HL7 FHIR R4 DiagnosticReport with contained Observations (research use only)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import ModelRelease
from dashboard.services.specimens import Specimen

CODES = "urn:all-edge:codes"
VERDICTS = "urn:all-edge:specimen-verdict"
SPECIMENS = "urn:all-edge:specimen"
RESEARCH_NOTICE = (
    "Research use only: produced by the ALL edge research tool, not by a diagnostic device. "
    "It is not a diagnosis and must not be used for clinical decisions."
)


def report_id(specimen_id: str) -> str:
    """A FHIR id for a specimen's report: stable (a retried push overwrites) and within FHIR's id alphabet."""
    return "all-edge-" + hashlib.sha256(specimen_id.encode()).hexdigest()[:40]


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODES, "code": code, "display": display}], "text": display}


def _observation(key: str, code: str, display: str, status: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": key, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory", "display": "Laboratory"}]}],
        "code": _code(code, display), "effectiveDateTime": when, **value,
    }


def model_names(session: Session, versions: tuple[str, ...]) -> dict[str, str]:
    """Release names of the given model versions, from the registry (unknown versions are left out)."""
    rows = session.execute(select(ModelRelease.version, ModelRelease.name).where(ModelRelease.version.in_(versions)))
    return {str(v): str(n) for v, n in rows}


def diagnostic_report(specimen: Specimen, names: dict[str, str], issued: datetime) -> dict[str, Any]:
    """The DiagnosticReport (final once the specimen is final, else preliminary) with its Observations contained."""
    r = specimen.result
    status = "final" if specimen.final else "preliminary"
    when = specimen.last_at.isoformat()
    observations: list[dict[str, Any]] = []
    for name, p in r.mean_probabilities.items():
        observations.append(_observation(
            f"prob-{len(observations)}", f"mean-probability-{name}", f"Mean probability of class {name} over usable fields",
            status, when, valueQuantity={"value": round(p, 6), "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1"},
        ))
    counts = {
        "fields": ("Fields of view classified", r.fields), "usable-fields": ("Usable fields (certain, in distribution)", r.usable),
        "malignant-fields": ("Confidently malignant usable fields", r.malignant),
        "uncertain-fields": ("Fields below the confidence threshold", r.uncertain),
        "ood-fields": ("Fields out of the model's training distribution", r.out_of_distribution),
        "reviewed-fields": ("Fields labelled by a reviewer", r.reviewed),
    }
    for code, (display, value) in counts.items():
        observations.append(_observation(f"count-{code}", code, display, status, when, valueInteger=value))
    for name, count in r.distribution.items():
        observations.append(_observation(
            f"dist-{len(observations)}", f"fields-labelled-{name}", f"Usable fields labelled {name}", status, when, valueInteger=count,
        ))
    observations.append(_observation(
        "ood", "out-of-distribution", "Any field out of distribution", status, when, valueBoolean=r.out_of_distribution > 0,
    ))
    models = ", ".join(f"{names.get(v, 'unknown model')} {v}" for v in specimen.models)
    observations.append(_observation("model", "model", "Model name and version", status, when, valueString=models))
    for index, device in enumerate(specimen.devices):
        observations.append(_observation(
            f"device-{index}", "edge-device", "Edge device that classified fields", status, when,
            valueString=device, device={"display": f"edge node {device}"},
        ))
    observations.append(_observation(
        "review", "review-status", "Review of uncertain and out-of-distribution fields", status, when,
        valueString=specimen.review_status,
    ))
    verdict_text = f"Specimen {specimen.specimen_id}: {r.verdict.value} ({r.malignant} confidently malignant of {r.usable} usable fields)."
    return {
        "resourceType": "DiagnosticReport",
        "id": report_id(specimen.specimen_id),
        "meta": {"tag": [{"system": CODES, "code": "research-use-only", "display": "Research use only, not a diagnostic device"}]},
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{verdict_text}</p><p>{RESEARCH_NOTICE}</p></div>'},
        "contained": observations,
        "identifier": [{"system": SPECIMENS, "value": specimen.specimen_id}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM", "display": "Hematology"}]}],
        "code": _code("specimen-verdict", "ALL edge specimen verdict (research tool)"),
        "effectivePeriod": {"start": specimen.first_at.isoformat(), "end": when},
        "issued": issued.isoformat(),
        "performer": [{"display": "ALL edge research tool (not a diagnostic device)"}],
        "specimen": [{"identifier": {"system": SPECIMENS, "value": specimen.specimen_id}, "display": f"specimen {specimen.specimen_id}"}],
        "result": [{"reference": f"#{o['id']}"} for o in observations],
        "conclusion": f"{verdict_text} {RESEARCH_NOTICE}",
        "conclusionCode": [{"coding": [{"system": VERDICTS, "code": r.verdict.value.replace(" ", "-"), "display": r.verdict.value}]}],
    }


def search_bundle(reports: list[dict[str, Any]], self_url: str, base_url: str) -> dict[str, Any]:
    """A searchset Bundle of reports."""
    return {
        "resourceType": "Bundle", "type": "searchset", "total": len(reports),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [{"fullUrl": f"{base_url}/DiagnosticReport/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in reports],
    }
