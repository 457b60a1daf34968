"""Schema of how long the dashboard keeps telemetry at each resolution (confs.json dashboard.retention)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetentionConfs(BaseModel):
    """Raw Life telemetry for a while, then per-minute and per-hour roll-ups; results and audit are always kept."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    raw_telemetry_days: float = Field(
        30.0, gt=0, description="raw Life telemetry is kept this many days, then only its per-minute and per-hour roll-ups"
    )
    minute_rollup_days: float = Field(90.0, gt=0, description="per-minute telemetry roll-ups are kept this many days")
    hour_rollup_days: float | None = Field(
        None, gt=0, description="per-hour telemetry roll-ups are kept this many days; null keeps them for good"
    )
    run_every_s: float = Field(
        3600.0, ge=10, description="how often the ingest rolls up new telemetry and deletes what is past its period"
    )

    @model_validator(mode="after")
    def _coarser_lives_longer(self) -> "RetentionConfs":
        if self.minute_rollup_days < self.raw_telemetry_days:
            raise ValueError("minute_rollup_days must be at least raw_telemetry_days")
        if self.hour_rollup_days is not None and self.hour_rollup_days < self.minute_rollup_days:
            raise ValueError("hour_rollup_days must be at least minute_rollup_days (or null)")
        return self
