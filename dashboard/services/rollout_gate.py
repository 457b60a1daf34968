"""The health gate between phases: no new failures, and results no worse than before the update on the same nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from contracts.messages import WarningCode
from dashboard.models import Classification, Rollout, RolloutTarget, WarningEvent
from dashboard.services.rollout_states import TargetState

MIN_RESULTS = 10  # fewest results since the update before shares and latency are compared
BASELINE_RESULTS = 200  # per node, the latest results before the update form its baseline
SHARE_TOLERANCE = 0.05  # uncertain or OOD share may rise this much (absolute) before the gate fails
LATENCY_RATIO = 1.25  # mean inference time may grow by this factor ...
LATENCY_SLACK_MS = 5.0  # ... plus this many milliseconds (noise on fast models)
FAILURE_WARNINGS = (WarningCode.SELF_TEST_FAILED.value, WarningCode.MODEL_ERROR.value)


@dataclass(frozen=True)
class Figures:
    """Results of a set of nodes under one model: count, uncertain and OOD share, mean latency."""

    results: int = 0
    uncertain: float = 0.0
    ood: float = 0.0
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """JSON-ready, rounded."""
        return {"results": self.results, "uncertain": round(self.uncertain, 4), "ood": round(self.ood, 4),
                "latency_ms": round(self.latency_ms, 2)}


@dataclass
class Verdict:
    """pass, fail or wait (too few results yet), with the reasons and the figures compared."""

    status: str
    reasons: list[str] = field(default_factory=list)
    before: Figures = Figures()
    after: Figures = Figures()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the phase log and the pages."""
        return {"status": self.status, "reasons": self.reasons, "before": self.before.as_dict(),
                "after": self.after.as_dict()}


def _figures(rows: Sequence[tuple[int, int, int, float]]) -> Figures:
    """Pool (count, uncertain, ood, latency sum) rows into one Figures."""
    count = sum(r[0] for r in rows)
    if not count:
        return Figures()
    return Figures(count, sum(r[1] for r in rows) / count, sum(r[2] for r in rows) / count,
                   sum(r[3] for r in rows) / count)


def _aggregate(query: Any) -> Any:
    sub = query.subquery()
    return select(func.count(), func.coalesce(func.sum(cast(sub.c.uncertain, Integer)), 0),
                  func.coalesce(func.sum(cast(sub.c.out_of_distribution, Integer)), 0),
                  func.coalesce(func.sum(sub.c.inference_ms), 0.0))


def measure(session: Session, devices: Sequence[str], version: str) -> tuple[Figures, Figures]:
    """Figures of the nodes before the update (their latest other-version results) and since (this version's)."""
    columns = (Classification.uncertain, Classification.out_of_distribution, Classification.inference_ms)
    before_rows, after_rows = [], []
    for device in devices:
        of_device = select(*columns).where(Classification.device_id == device)
        earlier = of_device.where(Classification.model_version != version).order_by(Classification.sent_at.desc())
        before_rows.append(tuple(session.execute(_aggregate(earlier.limit(BASELINE_RESULTS))).one()))
        after_rows.append(tuple(session.execute(_aggregate(of_device.where(Classification.model_version == version))).one()))
    return _figures(before_rows), _figures(after_rows)


def evaluate(session: Session, rollout: Rollout, targets: Sequence[RolloutTarget], since: datetime) -> Verdict:
    """Judge one finished phase: failures and node warnings since it began, then shares and latency."""
    reasons = []
    failed = [t.device_id for t in targets if t.state == TargetState.FAILED]
    if failed:
        reasons.append(f"update failed on {', '.join(failed)}")
    devices = [t.device_id for t in targets if t.state == TargetState.ACTIVE]
    if devices:
        warned = session.scalars(select(WarningEvent.device_id).where(
            WarningEvent.device_id.in_(devices), WarningEvent.code.in_(FAILURE_WARNINGS),
            WarningEvent.received_at >= since,
        ).distinct()).all()
        if warned:
            reasons.append(f"self-test or model errors on {', '.join(sorted(warned))} since the phase began")
    before, after = measure(session, devices, rollout.release.version)
    if reasons:
        return Verdict("fail", reasons, before, after)
    if before.results < MIN_RESULTS:
        return Verdict("pass", ["too few results before the update to compare"], before, after)
    if after.results < MIN_RESULTS:
        return Verdict("wait", [f"waiting for results: {after.results} of {MIN_RESULTS} since the update"], before, after)
    if after.uncertain > before.uncertain + SHARE_TOLERANCE:
        reasons.append(f"uncertain share rose from {before.uncertain:.0%} to {after.uncertain:.0%}")
    if after.ood > before.ood + SHARE_TOLERANCE:
        reasons.append(f"out-of-distribution share rose from {before.ood:.0%} to {after.ood:.0%}")
    if after.latency_ms > before.latency_ms * LATENCY_RATIO + LATENCY_SLACK_MS:
        reasons.append(f"mean inference time rose from {before.latency_ms:.1f} ms to {after.latency_ms:.1f} ms")
    return Verdict("fail" if reasons else "pass", reasons, before, after)
