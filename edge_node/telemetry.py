"""Health telemetry (Life) from psutil and node counters, and rate-limited Warnings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from contracts.messages import LifeMessage, Severity, WarningCode, WarningMessage
from edge_node.inference import Prediction

logger = logging.getLogger(__name__)

Details = dict[str, float | int | str | bool | None]


@dataclass(frozen=True)
class Thresholds:
    """When a measurement becomes a Warning."""

    disk_percent: float = 90.0
    temperature_c: float = 85.0
    low_confidence_streak: int = 10


class InferenceStats:
    """Counts inferences, their mean latency and the current run of uncertain results; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self._total_ms = 0.0
        self.uncertain_streak = 0

    def record(self, prediction: Prediction) -> int:
        """Count one prediction; returns the uncertain streak after it."""
        with self._lock:
            self.count += 1
            self._total_ms += prediction.inference_ms
            self.uncertain_streak = self.uncertain_streak + 1 if prediction.uncertain else 0
            return self.uncertain_streak

    def mean_ms(self) -> float | None:
        """Mean inference time so far, or None before the first."""
        with self._lock:
            return self._total_ms / self.count if self.count else None


class Warner:
    """Publishes WarningMessages, at most one per code per `min_interval_s`."""

    def __init__(self, device_id: str, publish: Callable[[WarningMessage], None], min_interval_s: float = 60.0) -> None:
        self._device_id = device_id
        self._publish = publish
        self._min_interval_s = min_interval_s
        self._last: dict[tuple[WarningCode, str], float] = {}
        self._lock = threading.Lock()

    def warn(
        self,
        code: WarningCode,
        text: str,
        severity: Severity = Severity.WARNING,
        details: Details | None = None,
        key: str = "",
    ) -> bool:
        """Publish a warning unless the same code (and key) was published too recently; returns whether it was."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get((code, key))
            if last is not None and now - last < self._min_interval_s:
                return False
            self._last[(code, key)] = now
        logger.warning("%s: %s", code.value, text)
        message = WarningMessage(
            device=self._device_id, code=code, severity=severity, message=text[:1000], details=details or {}
        )
        try:
            self._publish(message)
        except Exception:
            logger.exception("could not publish warning %s", code.value)
            return False
        return True


def max_temperature() -> float | None:
    """Hottest current reading among the board's sensors, or None where there are none."""
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return None
    try:
        readings = [entry.current for entries in read().values() for entry in entries if entry.current is not None]
    except (OSError, RuntimeError):
        return None
    valid = [t for t in readings if -50.0 <= t <= 200.0]
    return max(valid) if valid else None


class Telemetry:
    """Builds Life messages and raises Warnings from what it measures."""

    def __init__(
        self,
        device_id: str,
        stats: InferenceStats,
        warner: Warner,
        disk_path: Path,
        outbox_depth: Callable[[], int],
        model_version: Callable[[], str | None],
        thresholds: Thresholds = Thresholds(),
        serving_info: Callable[[], dict[str, str | None]] | None = None,
    ) -> None:
        self._device_id = device_id
        self._stats = stats
        self._warner = warner
        self._disk_path = Path(disk_path)
        self._outbox_depth = outbox_depth
        self._model_version = model_version
        self._serving_info = serving_info or (lambda: {})
        self.thresholds = thresholds
        self._started = time.monotonic()
        psutil.cpu_percent(None)  # the first call only sets the baseline

    def on_prediction(self, prediction: Prediction) -> None:
        """Count a prediction and warn when uncertain results keep coming."""
        streak = self._stats.record(prediction)
        if streak >= self.thresholds.low_confidence_streak:
            self._warner.warn(
                WarningCode.LOW_CONFIDENCE_STREAK,
                f"{streak} uncertain results in a row: check staining, focus and illumination",
                details={"streak": streak, "model_version": prediction.model_version},
            )

    def life(self) -> LifeMessage:
        """Measure now, raise any threshold warnings, and return the Life message."""
        disk = psutil.disk_usage(str(self._existing(self._disk_path))).percent
        temperature = max_temperature()
        if disk >= self.thresholds.disk_percent:
            self._warner.warn(WarningCode.DISK_LOW, f"disk {disk:.0f}% full", details={"disk_percent": disk})
        if temperature is not None and temperature >= self.thresholds.temperature_c:
            self._warner.warn(
                WarningCode.TOO_HOT, f"board at {temperature:.0f} °C", Severity.CRITICAL, {"temperature_c": temperature}
            )
        return LifeMessage(
            device=self._device_id,
            cpu_percent=min(100.0, psutil.cpu_percent(None)),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=disk,
            temperature_c=temperature,
            uptime_s=time.monotonic() - self._started,
            inference_count=self._stats.count,
            inference_ms_mean=self._stats.mean_ms(),
            outbox_depth=self._outbox_depth(),
            model_version=self._model_version(),
            **self._serving_info(),
        )

    @staticmethod
    def _existing(path: Path) -> Path:
        """The nearest existing ancestor, so disk usage works before the folder is made."""
        path = path.resolve()
        while not path.exists() and path != path.parent:
            path = path.parent
        return path
