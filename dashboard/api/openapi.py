"""The OpenAPI 3 document of /api/v1."""

from __future__ import annotations

from typing import Any

_Q = lambda name, kind="string", fmt=None: {"name": name, "in": "query", "required": False,  # noqa: E731
                                            "schema": {"type": kind, **({"format": fmt} if fmt else {})}}
_SINCE = {**_Q("since", fmt="date-time"), "description": "included: rows at or after this time (with a zone)"}
_UNTIL = {**_Q("until", fmt="date-time"), "description": "excluded: rows before this time (with a zone), as on the pages"}
_ID = lambda name, kind="integer": {"name": name, "in": "path", "required": True, "schema": {"type": kind}}  # noqa: E731
_OK = {"200": {"description": "OK"}, "401": {"description": "missing or invalid token"}}
_ADMIN = {**_OK, "400": {"description": "invalid request"}, "403": {"description": "needs an admin token"}}


def _op(summary: str, params: list[dict[str, Any]] | None = None, admin: bool = False, body: dict[str, Any] | None = None,
        responses: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or [], "responses": responses or (_ADMIN if admin else _OK)}
    if body:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _results_responses() -> dict[str, Any]:
    """The results list's 200 body: `verdict` is what to read; label and probabilities stay for analysis."""
    number, text, flag = {"type": "number"}, {"type": "string"}, {"type": "boolean"}
    result = {"type": "object", "properties": {
        "message_id": text, "device": text, "sample_id": text, "image_sha256": text,
        "verdict": {"type": "string", "description": "the label, or 'needs review: outside what this model was "
                    "trained on' when out_of_distribution is true: such a result is never a diagnosis"},
        "label": {"type": "string", "description": "the model's top class, whatever the verdict"},
        "out_of_distribution": {"type": "boolean", "description": "the input is unlike the model's training data"},
        "ood_score": {"type": "number", "nullable": True, "description": "higher = further from the training data"},
        "confidence": number, "probabilities": {"type": "object", "additionalProperties": number},
        "model_version": text, "inference_ms": number, "uncertain": flag, "sent_at": {"type": "string", "format": "date-time"}}}
    body = {"type": "object", "properties": {"page": {"type": "integer"}, "per_page": {"type": "integer"},
                                             "has_next": flag, "results": {"type": "array", "items": result}}}
    return {**_OK, "200": {"description": "OK", "content": {"application/json": {"schema": body}}},
            "400": {"description": "invalid filter"}}


def _lab_paths() -> dict[str, Any]:
    """The laboratory workflow: specimens, the review queue and FHIR DiagnosticReports."""
    date = {**_Q("date"), "description": "FHIR date search on the specimen's last field: 2025-01-01, ge2025-01-01, "
            "le2025-01-02T10:00:00Z (prefixes ge, gt, le, lt, eq); repeat for a range"}
    verdict = {**_Q("verdict"), "schema": {"type": "string", "enum": ["suspicious", "not suspicious", "insufficient"]}}
    fhir_ok = {**_OK, "200": {"description": "OK", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
               "400": {"description": "invalid search"}}
    review_body = {"application/json": {"schema": {"type": "object", "required": ["label"], "properties": {
        "label": {"type": "string", "description": "one of the release's classes; the model's label confirms it"},
        "comment": {"type": "string"}}}}}
    review_responses = {"201": {"description": "stored"}, "400": {"description": "invalid review"},
                        "401": {"description": "missing or invalid token"}, "403": {"description": "needs a reviewer token"}}
    return {
        "/specimens": {"get": _op("Specimens with their verdicts", [verdict, _Q("device"), date])},
        "/review/queue": {"get": _op("Results waiting for a reviewer (uncertain, OOD and a random share)", [_Q("device")])},
        "/review/{result_id}": {"post": _op("Review one result (reviewer or admin token)", [_ID("result_id")],
                                            body=review_body, responses=review_responses)},
        "/fhir/DiagnosticReport": {"get": _op("FHIR R4 search: DiagnosticReports as a searchset Bundle",
                                              [_Q("specimen"), date], responses=fhir_ok)},
        "/fhir/DiagnosticReport/{report_id}": {"get": _op("One FHIR R4 DiagnosticReport", [_ID("report_id", "string")],
                                                          responses={**fhir_ok, "404": {"description": "no such report"}})},
    }


def openapi_document() -> dict[str, Any]:
    """The document: every route, its parameters and the bearer security scheme."""
    rollout_body = {"application/json": {"schema": {"type": "object", "required": ["release_id"], "properties": {
        "release_id": {"type": "integer"}, "targets": {"type": "string", "enum": ["all", "zone", "devices"]},
        "zone": {"type": "string"}, "devices": {"type": "array", "items": {"type": "string"}},
        "canary_size": {"type": "integer", "minimum": 0}, "failure_threshold": {"type": "integer", "minimum": 0}}}}}
    upload_body = {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "package": {"type": "string", "format": "binary"}}}}}
    paths = {
        "/devices": {"get": _op("List nodes", [_Q("zone")])},
        "/devices/{device_id}": {"get": _op("One node", [_ID("device_id", "string")])},
        "/devices/{device_id}/telemetry": {"get": _op("Telemetry series", [
            _ID("device_id", "string"), _SINCE, _UNTIL, _Q("max_points", "integer")])},
        "/results": {"get": _op("Classification results", [
            _Q("device"), _Q("label"), _Q("min_confidence", "number"), _Q("max_confidence", "number"),
            _SINCE, _UNTIL, _Q("uncertain", "boolean"),
            _Q("out_of_distribution", "boolean"), _Q("page", "integer"), _Q("per_page", "integer")],
            responses=_results_responses())},
        "/alerts": {"get": _op("Alerts", [_Q("open", "boolean")])},
        "/alerts/{alert_id}/ack": {"post": _op("Acknowledge an alert", [_ID("alert_id")], admin=True)},
        "/releases": {"get": _op("Model releases"), "post": _op("Upload a signed package", admin=True, body=upload_body)},
        "/rollouts": {"get": _op("Rollouts"), "post": _op("Create a rollout", admin=True, body=rollout_body)},
        "/rollouts/{rollout_id}": {"get": _op("One rollout", [_ID("rollout_id")])},
        "/rollouts/{rollout_id}/halt": {"post": _op("Halt", [_ID("rollout_id")], admin=True)},
        "/rollouts/{rollout_id}/resume": {"post": _op("Resume", [_ID("rollout_id")], admin=True)},
        "/rollouts/{rollout_id}/rollback": {"post": _op("Roll back", [_ID("rollout_id")], admin=True)},
        "/openapi.json": {"get": _op("This document")},
        **_lab_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "ALL edge fleet dashboard API", "version": "1.0.0",
                 "description": "Prometheus metrics are served outside this API at /metrics, with the same bearer "
                                "token (docs/monitoring.md)."},
        "servers": [{"url": "/api/v1"}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
