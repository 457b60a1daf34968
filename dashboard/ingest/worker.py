"""The ingest worker: MQTT in (persistent session, manual acks), batched writes, rollout engine ticks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from contracts.messages import NodeState, StatusMessage, to_bytes
from contracts.topics import application_topic, dashboard_subscriptions
from dashboard.ingest.replay import replay_seconds
from dashboard.ingest.store import BatchWriter, WriteResult
from dashboard.ingest.validate import Accepted, Rejection, validate

logger = logging.getLogger(__name__)
SOFTWARE_VERSION = "0.1.0"
DEFAULT_SHARED_GROUP = "ingest"
"""The group `python -m dashboard.ingest --workers N` joins unless --shared names another."""


@dataclass(frozen=True)
class IngestSettings:
    """How the worker connects and batches."""

    host: str
    port: int
    username: str
    password: str | None
    location: str
    app_id: str
    client_id: str
    shared_group: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    batch_size: int = 1000
    flush_interval_s: float = 0.1
    receive_maximum: int = 5000
    tick_interval_s: float = 1.0


class _Inbound(NamedTuple):
    """One message as paho delivered it, tagged with the connection it came on (a tuple: built on paho's thread)."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


def _validate_safely(item: _Inbound) -> Accepted | Rejection:
    """validate(), but a bug it trips over rejects that one message instead of stopping ingest."""
    try:
        return validate(item.topic, item.payload)
    except Exception as exc:
        logger.exception("validating a message on %s failed unexpectedly", item.topic)
        return Rejection("invalid", item.topic, f"validation failed: {type(exc).__name__}")


class IngestWorker:
    """Acknowledges each QoS 1 message only after the transaction holding it commits."""

    def __init__(self, settings: IngestSettings, writer: BatchWriter, tick: Any = None) -> None:
        self.settings = settings
        self.writer = writer
        self.tick = tick
        # SimpleQueue: put/get in C, a few times cheaper per message than Queue at thousands per second.
        self.inbox: queue.SimpleQueue[_Inbound] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.generation = 0
        self.totals = WriteResult()
        # Set by the entry point on one worker of a group: asks the nodes to replay after a lost link.
        self.request_replay: Callable[[int], int] | None = None
        self._replay_lock = threading.Lock()
        self._link_lost_at: float | None = None
        self._replay_due_s: int | None = None
        self.client = self._make_client()

    def _status(self, state: NodeState) -> bytes:
        """The dashboard's own retained Status payload."""
        return to_bytes(StatusMessage(device=self.settings.app_id, state=state, software_version=SOFTWARE_VERSION))

    def _make_client(self) -> mqtt.Client:
        """A paho MQTT 5 client with manual acks, credentials, TLS and the OFFLINE will."""
        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file)
        client.will_set(application_topic(s.location, s.app_id), self._status(NodeState.OFFLINE), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        return client

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused the connection of account %s: %s (a worker beyond the dashboard's ingest "
                         "worker accounts needs broker_config add-dashboard --ingest-workers N)", self.settings.username,
                         reason)
            return
        self.generation += 1
        with self._replay_lock:
            if self._link_lost_at is not None:
                self._replay_due_s = replay_seconds(time.monotonic() - self._link_lost_at)
                self._link_lost_at = None
        logger.info("connected (session present: %s); subscribing", flags.session_present)
        s = self.settings
        client.subscribe([(topic, 1) for topic in dashboard_subscriptions(s.location, s.shared_group)])
        # A persistent session keeps the subscriptions of an earlier run with or without --workers: the other form
        # would deliver every message a second time.
        other = dashboard_subscriptions(s.location, None if s.shared_group else DEFAULT_SHARED_GROUP)
        client.unsubscribe(other)
        client.publish(application_topic(s.location, s.app_id), self._status(NodeState.ONLINE), qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        with self._replay_lock:
            if self._link_lost_at is None:
                self._link_lost_at = time.monotonic()
        if not self.stopping.is_set():
            logger.warning("disconnected from the broker: %s; paho reconnects", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Inbound(self.generation, msg.mid, msg.qos, msg.topic, msg.payload))

    def start(self) -> None:
        """Connect (with a persistent session) and start paho's network thread."""
        s = self.settings
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry_s
        props.ReceiveMaximum = s.receive_maximum
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=props)
        self.client.loop_start()

    def _collect(self, timeout: float) -> list[_Inbound]:
        """Up to batch_size messages: waits at most timeout for the first, then flush_interval for the rest."""
        batch: list[_Inbound] = []
        try:
            batch.append(self.inbox.get(timeout=timeout))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.settings.flush_interval_s
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[_Inbound]) -> WriteResult:
        """Validate, write (retrying until the database takes it) and then acknowledge a batch."""
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        for item in batch:
            outcome = _validate_safely(item)
            if isinstance(outcome, Accepted):
                accepted.append(outcome)
            else:
                rejected.append(outcome)
        delay = 0.1
        while True:
            try:
                result = self.writer.write(accepted, rejected)
                break
            except Exception:
                if self.stopping.is_set():
                    raise
                logger.exception("batch of %d not stored; retrying in %.1fs (nothing acknowledged)", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        for item in batch:
            # Messages from an earlier connection are redelivered by the broker: their mids are void now.
            if item.qos > 0 and item.generation == self.generation:
                self.client.ack(item.mid, item.qos)
        self.totals.stored += result.stored
        self.totals.duplicates += result.duplicates
        self.totals.rejected += result.rejected
        return result

    def run(self) -> None:
        """Process until stop() is called; the rollout engine ticks every tick_interval_s and after fleet changes."""
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            # Without an engine nothing is due: a timeout of 0 would spin on an empty inbox.
            until_tick = next_tick - time.monotonic() if self.tick is not None else 0.5
            batch = self._collect(timeout=max(0.0, min(0.5, until_tick)))
            changed = bool(batch) and self.process(batch).fleet_changed
            self._request_replay_if_due()
            if self.tick is not None and (changed or time.monotonic() >= next_tick):
                try:
                    self.tick()
                except Exception:
                    logger.exception("rollout engine tick failed")
                next_tick = time.monotonic() + self.settings.tick_interval_s

    def _request_replay_if_due(self) -> None:
        """After a reconnect that followed a lost link, ask the nodes for what the broker may have dropped."""
        with self._replay_lock:
            seconds, self._replay_due_s = self._replay_due_s, None
        if seconds is None or self.request_replay is None:
            return
        try:
            sent = self.request_replay(seconds)
            logger.info("asked %d nodes to replay their last %d s: the link to the broker had been lost", sent, seconds)
        except Exception:
            logger.exception("asking the nodes to replay failed")

    def stop(self) -> None:
        """Store what is queued, publish OFFLINE, disconnect."""
        self.stopping.set()
        while batch := self._collect(timeout=0):
            self.process(batch)
        info = self.client.publish(application_topic(self.settings.location, self.settings.app_id),
                                   self._status(NodeState.OFFLINE), qos=1, retain=True)
        if self.connected.is_set():
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
