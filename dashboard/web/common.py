"""Helpers shared by the web blueprints: login-by-default, admin checks, audit, config and filters."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app
from flask_login import current_user

DEFAULT_OFFLINE_AFTER_S = 60.0


def utc_now() -> datetime:
    """Current aware UTC time."""
    return datetime.now(UTC)


def require_login(blueprint: Blueprint) -> Blueprint:
    """Lock every route of the blueprint behind a session, so routes added later are covered too."""

    @blueprint.before_request
    def _require_session() -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        return None

    return blueprint


def confs_value(section: str, name: str, default: Any) -> Any:
    """A value of the loaded confs (as create_app keeps them), or default."""
    confs = current_app.config.get("CONFS")
    part = getattr(confs, section, None)
    return getattr(part, name, default) if part is not None else default


def offline_after_s() -> float:
    """Seconds of silence after which a node is shown stale."""
    configured = current_app.config.get("OFFLINE_AFTER_S")
    if configured is not None:
        return float(configured)
    return float(confs_value("dashboard", "offline_after_s", DEFAULT_OFFLINE_AFTER_S))


def _when(value: datetime | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM:SS' UTC, or a dash."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | None, places: int = 1, suffix: str = "") -> str:
    """A number with places decimals and a suffix, or a dash."""
    return "—" if value is None else f"{value:.{places}f}{suffix}"


def _compact_json(value: Any) -> str:
    """Short JSON text of a value (autoescaped by Jinja like any string)."""
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)


def _metric(metrics: Any, key: str) -> str:
    """A numeric metric as text (fractions as percentages), or a dash."""
    value = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value * 100:.1f}%" if 0 <= value <= 1 else f"{value:.3g}"


def _filesize(size: int | None) -> str:
    """Bytes as a short human size."""
    if size is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return "—"


TEMPLATE_FILTERS: dict[str, Callable[..., str]] = {
    "when": _when, "num": _num, "compact_json": _compact_json, "metric": _metric, "filesize": _filesize,
}


def register_filters(app: Flask) -> None:
    """Add the template filters the pages use."""
    app.jinja_env.filters.update(TEMPLATE_FILTERS)
