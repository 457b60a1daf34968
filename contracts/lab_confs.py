"""Schema of the laboratory-workflow settings in confs.json: node images, review, FHIR export and metrics."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class NodeImagesConfs(_Section):
    """Images a node keeps for review; they never travel over MQTT."""

    dir: str = Field("var/edge/images", description="folder of kept images, named by sha256")
    retention_s: float = Field(
        7 * 24 * 3600.0, ge=0, description="how long a classified image is kept for review; 0 keeps none"
    )
    dashboard_token_file: str | None = Field(
        None, description="git-ignored file with the token only the dashboard presents to fetch images; DASHBOARD_IMAGE_TOKEN overrides"
    )


class NodeMetricsConfs(_Section):
    """The node's Prometheus endpoint."""

    token_file: str | None = Field(
        None, description="git-ignored file with the bearer token Prometheus presents at GET /metrics; METRICS_TOKEN overrides; none: no /metrics"
    )


class ReviewConfs(_Section):
    """The hematologist review loop."""

    sample_share: float = Field(
        0.05, ge=0, le=1, description="random share of all results put in the review queue besides uncertain and OOD ones"
    )
    node_urls: dict[str, str] = Field(
        default_factory=dict, description="HTTP(S) base URL of each node's image endpoint, by device id"
    )
    image_token_file: str | None = Field(
        None, description="git-ignored file with the token the dashboard presents to nodes for images; REVIEW_IMAGE_TOKEN overrides"
    )
    ca_file: str | None = Field(None, description="CA certificate of the nodes' HTTPS endpoints; null = the system's CAs")
    cache_s: float = Field(3600.0, ge=0, description="longest an image is cached by the dashboard (never past the node's retention)")
    agreement_alert_below: float = Field(
        0.8, ge=0, le=1, description="a node or model whose agreement with reviewers falls below this raises an alert"
    )
    agreement_window: int = Field(50, ge=1, description="how many of the latest reviews the alert's agreement is taken over")
    agreement_min_reviews: int = Field(10, ge=1, description="fewest reviews before agreement can raise an alert")


class FhirConfs(_Section):
    """FHIR R4 export of specimen verdicts."""

    base_url: str | None = Field(None, description="FHIR server base URL that final reports are pushed to; null: no push")
    token_file: str | None = Field(None, description="git-ignored file with a bearer token for the FHIR server; FHIR_TOKEN overrides")
    max_attempts: int = Field(8, ge=1, le=50, description="tries per report before the push is given up (audited)")
    retry_after_s: float = Field(30.0, gt=0, description="wait before the first retry; doubles after each failure")
    timeout_s: float = Field(10.0, gt=0, le=120, description="network timeout of one try")
