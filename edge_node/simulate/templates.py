"""Payload templates for light traffic: serialised once by contracts.messages, marked values swapped per message."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from contracts.messages import Envelope, LifeMessage, SensorsMessage, to_bytes

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
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
