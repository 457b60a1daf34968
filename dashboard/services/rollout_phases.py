"""Phases of a rollout (canary, then phases by count or percentage, then the rest) and its progress figures."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dashboard.models import Rollout, RolloutTarget, utcnow
from dashboard.services.rollout_states import DONE, IN_FLIGHT, TargetState, group_of

_PHASE = re.compile(r"^\s*(\d{1,6})\s*(%?)\s*$")
MAX_PHASES = 10


class PhaseError(ValueError):
    """Phases that cannot be used as written."""


def parse_phases(text: str | Sequence[str] | None) -> list[str]:
    """Phase sizes from '2, 25%, 50%' (or a list): whole node counts or percentages of all targets."""
    if text is None:
        return []
    parts = [p for p in (text.split(",") if isinstance(text, str) else list(text)) if str(p).strip()]
    if len(parts) > MAX_PHASES:
        raise PhaseError(f"at most {MAX_PHASES} phases")
    phases = []
    for part in parts:
        match = _PHASE.match(str(part))
        if match is None:
            raise PhaseError(f"phase {str(part).strip()!r} is neither a node count (3) nor a percentage (25%)")
        number, percent = int(match[1]), bool(match[2])
        if number < 1 or (percent and number > 100):
            raise PhaseError(f"phase {str(part).strip()!r} must be at least 1 and a percentage at most 100%")
        phases.append(f"{number}%" if percent else str(number))
    return phases


def phase_sizes(phases: Sequence[str], canary: int, total: int) -> list[int]:
    """Nodes per phase: index 0 the canary, then each phase, then whatever remains (dropping empty phases)."""
    sizes, left = [min(canary, total)], total - min(canary, total)
    for phase in phases:
        wanted = math.ceil(total * int(phase[:-1]) / 100) if phase.endswith("%") else int(phase)
        size = min(wanted, left)
        if size > 0:
            sizes.append(size)
            left -= size
    if left > 0:
        sizes.append(left)
    return sizes


def assign(count: int, phases: Sequence[str], canary: int) -> list[int]:
    """The phase index of each of count ordered targets (phase 0, the canary, may be empty)."""
    indexes: list[int] = []
    for index, size in enumerate(phase_sizes(phases, canary, count)):
        indexes += [index] * size
    return indexes


def last_phase(rollout: Rollout) -> int:
    """The highest phase index of the rollout's targets."""
    return max((t.phase for t in rollout.targets), default=0)


def phase_targets(rollout: Rollout, phase: int) -> list[RolloutTarget]:
    """Targets of one phase."""
    return [t for t in rollout.targets if t.phase == phase]


def phase_name(index: int) -> str:
    """'canary' for phase 0, else 'phase N' (the canary counts as phase 1 for people)."""
    return "canary" if index == 0 else f"phase {index + 1}"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def progress(rollout: Rollout, now: datetime | None = None) -> dict[str, Any]:
    """Counts by state and group, percent done, in-flight nodes, phases with their own counts and durations."""
    now = now or utcnow()
    targets = list(rollout.targets)
    by_state = Counter(str(t.state) for t in targets)
    groups = Counter(group_of(t.state) for t in targets)
    total = len(targets)
    done = sum(1 for t in targets if t.state in DONE)
    logged = {entry.get("phase"): entry for entry in (rollout.phase_log or []) if isinstance(entry, dict)}
    phases = []
    for index in sorted({t.phase for t in targets}):
        members = phase_targets(rollout, index)
        entry = logged.get(index, {})
        started, finished = _parse(entry.get("started_at")), _parse(entry.get("done_at"))
        phases.append({
            "index": index, "name": phase_name(index), "nodes": len(members),
            "active": sum(t.state == TargetState.ACTIVE for t in members),
            "failed": sum(t.state == TargetState.FAILED for t in members),
            "in_flight": sum(t.state in IN_FLIGHT for t in members),
            "done": sum(t.state in DONE for t in members),
            "current": index == rollout.phase and rollout.completed_at is None,
            "started_at": entry.get("started_at"), "done_at": entry.get("done_at"),
            "duration_s": _seconds(started, finished or (now if started else None)),
            "gate": entry.get("gate"), "gate_tone": gate_tone(entry.get("gate")),
            "gate_text": gate_text(entry.get("gate")),
        })
    soak_left = _seconds(now, rollout.soak_until) if rollout.soak_until and rollout.soak_until > now else None
    return {
        "total": total, "done": done, "percent": round(100.0 * done / total, 1) if total else 100.0,
        "by_state": dict(by_state), "active": groups["active"], "failed": groups["failed"],
        "in_flight": groups["in_flight"], "pending": groups["pending"], "skipped": groups["skipped"],
        "rollback": groups["rollback"], "phase": rollout.phase, "phase_name": phase_name(rollout.phase),
        "phases": phases, "started_at": _iso(rollout.started_at), "completed_at": _iso(rollout.completed_at),
        "elapsed_s": _seconds(rollout.started_at, rollout.completed_at or now),
        "soak_left_s": soak_left, "scheduled_at": _iso(rollout.scheduled_at),
    }


def log_phase(rollout: Rollout, index: int, **fields: Any) -> None:
    """Record facts about a phase (start, end, gate verdict) in the rollout's phase log."""
    log = [dict(entry) for entry in (rollout.phase_log or []) if isinstance(entry, dict)]
    entry = next((e for e in log if e.get("phase") == index), None)
    if entry is None:
        entry = {"phase": index}
        log.append(entry)
    entry.update({k: _iso(v) if isinstance(v, datetime) else v for k, v in fields.items()})
    rollout.phase_log = log  # a new list, so SQLAlchemy sees the change


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def progress_counts(figures: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """Flat figures for the live page's [data-count] fields: counts by state and group, percent, phase, times, reason."""
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.0f} s"

    flat: dict[str, Any] = dict(figures["by_state"])
    flat.update({key: figures[key] for key in ("total", "done", "percent", "active", "in_flight", "failed", "pending",
                                               "phase_name")})
    flat.update(soak_left=seconds(figures["soak_left_s"]), elapsed=seconds(figures["elapsed_s"]), reason=reason or "—")
    return flat


def gate_tone(gate: dict[str, Any] | None) -> str:
    """The badge class of a gate verdict: ok (pass), bad (fail), warn (waiting for results)."""
    status = (gate or {}).get("status")
    return "ok" if status == "pass" else "bad" if status == "fail" else "warn"


def gate_text(gate: dict[str, Any] | None) -> str:
    """A gate verdict's figures in words: uncertain and OOD share, latency and results before → after, reasons."""
    if not gate:
        return ""
    before, after = gate.get("before") or {}, gate.get("after") or {}

    def share(side: dict[str, Any], key: str) -> str:
        return f"{float(side.get(key) or 0) * 100:.0f}%"

    text = (f"uncertain {share(before, 'uncertain')} → {share(after, 'uncertain')}, "
            f"OOD {share(before, 'ood')} → {share(after, 'ood')}, "
            f"latency {before.get('latency_ms')} → {after.get('latency_ms')} ms "
            f"({before.get('results')} → {after.get('results')} results)")
    reasons = gate.get("reasons") or []
    return f"{text}: {'; '.join(reasons)}" if reasons else text


def phase_row(phase: dict[str, Any], status: str) -> dict[str, Any]:
    """One row of the live page's Phases table, as its cells show it (the stream's `phase` event)."""
    gate = phase.get("gate")
    duration = phase.get("duration_s")
    return {
        "index": phase["index"], "name": phase["name"], "nodes": phase["nodes"], "active": phase["active"],
        "in_flight": phase["in_flight"], "failed": phase["failed"], "current": phase["current"], "status": status,
        "started": (phase.get("started_at") or "—")[:19].replace("T", " "),
        "duration": "—" if duration is None else f"{duration:.0f} s",
        "gate": None if not gate else {"status": gate.get("status"), "tone": phase["gate_tone"],
                                       "text": phase["gate_text"]},
    }
