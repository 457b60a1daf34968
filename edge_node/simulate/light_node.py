"""One light node for edge_node.simulate.traffic: settings, payload templates (serialised once, values swapped), session."""

from __future__ import annotations

import math
import re
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contracts import SOFTWARE_VERSION
from contracts.messages import Envelope, LifeMessage, NodeState, SensorsMessage, StatusMessage, to_bytes, utc_now
from contracts.topics import Channel, device_topic
from edge_node.simulate.fleet import FleetError

MARKS = {"message_id": "0badc0de-0000-4000-8000-00000000beef", "sent_at": "2000-01-02T03:04:05.678901Z",
         "sample_id": "5a3b1e00000000000000000000d00d5a", "image_sha256": "e" * 64, "uptime_s": "123456.5",
         "inference_count": "987654", "cpu_percent": "12.25", "memory_percent": "34.75", "disk_percent": "56.125"}


class Template:
    """A payload serialised once by contracts.messages; fill() swaps its marked values for fresh ones."""

    def __init__(self, message: Envelope) -> None:
        text = to_bytes(message).decode()
        by_value = {value: name for name, value in MARKS.items()}
        self._parts: list[str] = []
        self.names: list[str] = []
        last = 0
        for found in re.finditer("|".join(map(re.escape, by_value)), text):
            name = by_value[found.group()]
            if not text[:found.start()].removesuffix('"').endswith(f'"{name}":') or name in self.names:
                raise ValueError(f"the mark of {name} is not its field's value exactly once in {text}")
            self._parts.append(text[last:found.start()])
            self.names.append(name)
            last = found.end()
        self._tail = text[last:]

    def fill(self, values: Mapping[str, str]) -> bytes:
        """The payload with each marked value replaced by values[name] (already in its JSON text form)."""
        out: list[str] = []
        for part, name in zip(self._parts, self.names):
            out += (part, values[name])
        out.append(self._tail)
        return "".join(out).encode()


def stamp() -> str:
    """Now, as contracts.messages writes sent_at (UTC, microseconds, Z)."""
    now = datetime.now(UTC)
    return f"{now.year:04d}-{now.month:02d}-{now.day:02d}T{now.hour:02d}:{now.minute:02d}:{now.second:02d}.{now.microsecond:06d}Z"


def life_template(device: str, model_version: str, serving: Mapping[str, str | None]) -> Template:
    """A node's Life, built as VirtualNode.publish_life builds it; marks: figures, id, time."""
    m = MARKS
    return Template(LifeMessage(
        device=device, message_id=uuid.UUID(m["message_id"]), sent_at=datetime.fromisoformat(m["sent_at"]),
        cpu_percent=float(m["cpu_percent"]), memory_percent=float(m["memory_percent"]),
        disk_percent=float(m["disk_percent"]), uptime_s=float(m["uptime_s"]), inference_count=int(m["inference_count"]),
        inference_ms_mean=7.5, outbox_depth=0, model_version=model_version, **serving))


def result_templates(device: str, model_version: str, classes: Sequence[str]) -> list[Template]:
    """A node's results, built as ClassificationPipeline builds them: each class confident, then each uncertain."""
    m = MARKS
    return [Template(SensorsMessage(
        device=device, message_id=uuid.UUID(m["message_id"]), sent_at=datetime.fromisoformat(m["sent_at"]),
        sample_id=m["sample_id"], image_sha256=m["image_sha256"], label=label, confidence=top,
        probabilities={c: top if c == label else (1 - top) / (len(classes) - 1) for c in classes},
        model_version=model_version, inference_ms=7.5, uncertain=top < 0.8))
        for top in (0.9, 0.6) for label in classes]


@dataclass(frozen=True)
class TrafficSettings:
    """How many nodes, how busy, where they connect and the model their results name."""

    nodes: int
    host: str
    port: int
    location: str
    zone: str
    model_version: str
    classes: tuple[str, ...]
    rate: float = 0.2
    life_interval_s: float = 1.0
    device_prefix: str = "traffic"
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    runtime: str = "openvino"
    precision: str = "f32"

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise FleetError(f"nodes must be at least 1, not {self.nodes}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise FleetError(f"the result rate must be a number >= 0, not {self.rate}")
        if not (math.isfinite(self.life_interval_s) and self.life_interval_s > 0):
            raise FleetError(f"the Life interval must be > 0 seconds, not {self.life_interval_s}")
        if len(self.classes) < 2:
            raise FleetError("results need at least two classes")


class LightNode:
    """One device: its paho MQTT 5 session, topics, payload templates and unacknowledged publishes by mid."""

    def __init__(self, device: str, password: str, s: TrafficSettings, started: float) -> None:
        self.device = device
        self.topics = {c: device_topic(s.location, s.zone, device, c) for c in (Channel.LIFE, Channel.SENSORS, Channel.STATUS)}
        self.pending: dict[int, str] = {}
        self.watched = False  # whether the loop watches the socket for writability (only after a short write)
        self.started, self.results = started, 0
        serving = {"runtime": s.runtime, "inference_device": "CPU", "precision": s.precision}
        self.life = life_template(device, s.model_version, serving)
        self.sensors = result_templates(device, s.model_version, s.classes)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device, password)
        if s.tls:
            self.client.tls_set(ca_certs=s.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.max_inflight_messages_set(100)
        self.session_started, self.version, self.serving = utc_now(), s.model_version, serving

    def status(self, online: bool) -> bytes:
        """The retained Status of this connection: the ONLINE birth or the OFFLINE will."""
        return to_bytes(StatusMessage(device=self.device, state=NodeState.ONLINE if online else NodeState.OFFLINE,
                                      model_version=self.version, software_version=SOFTWARE_VERSION,
                                      session_started=self.session_started, **self.serving))
