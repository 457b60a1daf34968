"""Life measurements and Warnings: fields in range, thresholds, rate limits, low-confidence streaks."""

from __future__ import annotations

from pathlib import Path

from contracts.messages import LifeMessage, WarningCode, WarningMessage, from_bytes, to_bytes
from edge_node.inference import Prediction
from edge_node.telemetry import InferenceStats, Telemetry, Thresholds, Warner


def prediction(uncertain: bool, ms: float = 4.0) -> Prediction:
    return Prediction("Pre", 0.5 if uncertain else 0.99, {"Pre": 0.99, "Pro": 0.01}, uncertain, ms, "1.0.0")


def make(tmp_path: Path, thresholds: Thresholds = Thresholds(), interval: float = 60.0):
    sent: list[WarningMessage] = []
    warner = Warner("devA", sent.append, min_interval_s=interval)
    telemetry = Telemetry("devA", InferenceStats(), warner, tmp_path / "not-yet" / "made", lambda: 7, lambda: "1.0.0",
                          thresholds)
    return telemetry, sent


def test_life_carries_valid_measurements_and_counters(tmp_path):
    telemetry, sent = make(tmp_path)
    telemetry.on_prediction(prediction(False, 2.0))
    telemetry.on_prediction(prediction(False, 4.0))
    life = telemetry.life()
    assert isinstance(from_bytes(to_bytes(life)), LifeMessage)
    assert life.inference_count == 2 and life.inference_ms_mean == 3.0
    assert life.outbox_depth == 7 and life.model_version == "1.0.0"
    assert 0 <= life.disk_percent <= 100 and 0 <= life.memory_percent <= 100 and life.uptime_s >= 0
    assert sent == []


def test_disk_threshold_raises_disk_low_once_per_interval(tmp_path):
    telemetry, sent = make(tmp_path, Thresholds(disk_percent=0.0))
    telemetry.life()
    telemetry.life()
    assert [w.code for w in sent] == [WarningCode.DISK_LOW]


def test_low_confidence_streak_warns_and_resets(tmp_path):
    telemetry, sent = make(tmp_path, Thresholds(low_confidence_streak=3), interval=0.0)
    for _ in range(2):
        telemetry.on_prediction(prediction(True))
    telemetry.on_prediction(prediction(False))
    for _ in range(2):
        telemetry.on_prediction(prediction(True))
    assert sent == []
    telemetry.on_prediction(prediction(True))
    assert [w.code for w in sent] == [WarningCode.LOW_CONFIDENCE_STREAK]
    assert sent[0].details["streak"] == 3


def test_warner_rate_limits_per_code_and_key():
    sent: list[WarningMessage] = []
    warner = Warner("devA", sent.append, min_interval_s=60.0)
    assert warner.warn(WarningCode.INPUT_REJECTED, "a", key="http")
    assert not warner.warn(WarningCode.INPUT_REJECTED, "b", key="http")
    assert warner.warn(WarningCode.INPUT_REJECTED, "c", key="folder")
    assert warner.warn(WarningCode.OUTBOX_OVERFLOW, "d")
    assert [w.message for w in sent] == ["a", "c", "d"]


def test_a_failing_publish_never_raises():
    def broken(_message: WarningMessage) -> None:
        raise RuntimeError("link gone")

    assert Warner("devA", broken).warn(WarningCode.TOO_HOT, "hot") is False
