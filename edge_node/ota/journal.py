"""Durable record of OTA commands: accepted, in progress, and applied with their outcome (bounded), surviving a kill."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from contracts.messages import CommandMessage, MessageError, from_bytes, to_bytes
from contracts.topics import Channel
from edge_node.model_store import write_json_atomically

logger = logging.getLogger(__name__)

DEFAULT_REMEMBERED_IDS = 1000
MAX_QUEUED_COMMANDS = 32


class JournalFull(RuntimeError):
    """Too many commands are waiting."""


class CommandJournal:
    """One JSON file, rewritten atomically on every change: queued commands, the one in progress, ids done."""

    def __init__(self, path: Path, remembered_ids: int = DEFAULT_REMEMBERED_IDS) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._done: deque[str] = deque(maxlen=remembered_ids)
        self._outcomes: dict[str, dict[str, Any]] = {}
        self._queued: list[dict[str, Any]] = []
        self._pending: dict[str, Any] | None = None
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._done.extend(str(i) for i in raw.get("done", []))
            outcomes = raw.get("outcomes", {})
            if isinstance(outcomes, dict):
                self._outcomes = {i: o for i, o in outcomes.items() if i in self._done and isinstance(o, dict)}
            self._queued = [q for q in raw.get("queued", []) if isinstance(q, dict)]
            pending = raw.get("pending")
            self._pending = pending if isinstance(pending, dict) else None
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            # A broken journal must not stop the node serving: keep it for inspection and start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.error("OTA journal %s is unreadable (%s); moved to %s", self.path, exc, aside.name)
            self.path.replace(aside)

    def _save(self) -> None:
        write_json_atomically(
            self.path,
            {"format": 2, "done": list(self._done), "outcomes": self._outcomes, "queued": self._queued,
             "pending": self._pending},
        )

    def known(self, command_id: str) -> bool:
        """True if the id was already accepted, is in progress, or is done."""
        with self._lock:
            return (
                command_id in self._done
                or any(q["command_id"] == command_id for q in self._queued)
                or (self._pending is not None and self._pending.get("command_id") == command_id)
            )

    def accept(self, message: CommandMessage) -> None:
        """Durably queue a command before its delivery is acknowledged to the broker."""
        with self._lock:
            if len(self._queued) >= MAX_QUEUED_COMMANDS:
                raise JournalFull(f"{MAX_QUEUED_COMMANDS} OTA commands are already waiting")
            self._queued.append({"command_id": message.command_id, "message": to_bytes(message).decode()})
            self._save()

    def queued(self) -> list[CommandMessage]:
        """Commands accepted but not yet started, oldest first (unreadable entries are dropped)."""
        with self._lock:
            messages = []
            for entry in self._queued:
                try:
                    message = from_bytes(str(entry.get("message", "")), Channel.COMMANDS)
                except MessageError as exc:
                    logger.error("dropping an unreadable queued OTA command: %s", exc)
                    continue
                if isinstance(message, CommandMessage):
                    messages.append(message)
            return messages

    def begin(self, command_id: str, kind: str, version: str | None, state: str) -> None:
        """Move a command from the queue to in progress."""
        with self._lock:
            self._queued = [q for q in self._queued if q["command_id"] != command_id]
            self._pending = {"command_id": command_id, "kind": kind, "version": version, "state": state}
            self._save()

    def stage(self, state: str, version: str | None = None) -> None:
        """Record the step the command in progress has reached (and its target version once known)."""
        with self._lock:
            if self._pending is not None:
                self._pending["state"] = state
                if version is not None:
                    self._pending["version"] = version
                self._save()

    def pending(self) -> dict[str, Any] | None:
        """The command that was in progress (after a kill: the one to report on)."""
        with self._lock:
            return dict(self._pending) if self._pending else None

    def finish(self, command_id: str, outcome: dict[str, Any] | None = None) -> None:
        """Mark a command done with its outcome, so a redelivery of its id is answered, not applied."""
        with self._lock:
            self._queued = [q for q in self._queued if q["command_id"] != command_id]
            if self._pending is not None and self._pending.get("command_id") == command_id:
                self._pending = None
            if command_id not in self._done:
                if len(self._done) == self._done.maxlen:
                    self._outcomes.pop(self._done[0], None)
                self._done.append(command_id)
            if outcome is not None:
                self._outcomes[command_id] = dict(outcome)
            self._save()

    def recorded(self, command_id: str) -> dict[str, Any] | None:
        """What a repeat of command_id is answered with: its outcome, or the step it has reached; None if queued."""
        with self._lock:
            if self._pending is not None and self._pending.get("command_id") == command_id:
                return {"state": self._pending.get("state"), "version": self._pending.get("version")}
            if command_id in self._done:
                return dict(self._outcomes.get(command_id) or {})
            return None
