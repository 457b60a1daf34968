"""Drains the outbox through the MQTT link in order, marking each message delivered only when its PUBACK arrives."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from paho.mqtt.enums import MQTTErrorCode

from edge_node.mqtt_link import MqttLink
from edge_node.outbox import Outbox, OutboxItem

logger = logging.getLogger(__name__)

_EARLY_ACK_TTL_S = 10.0


@dataclass
class _InFlight:
    seq: int
    published_at: float


class OutboxSender:
    """One thread that publishes stored messages (a bounded window in flight) and deletes acknowledged ones.

    While the link is down nothing new is handed to paho; paho itself resends what was in flight when
    the connection returns, and anything still unacknowledged `resend_after_s` after a reconnect is
    published again (the consumer drops duplicates by message_id). After every (re)connect, what the
    broker acknowledged within the outbox's replay window before the link went down is published again:
    a broker killed before its next autosave has lost those messages. What a restarted broker accepts
    before the subscribers return can reach nobody: a session lost with the broker, or a shared subscription
    (the ingest workers'), which Mosquitto 2.0 does not queue for members that are offline, even when it
    restored their sessions. So after every reconnect that follows a lost link, the window is replayed once
    more `resettle_s` later; the node's own session being present says nothing about the subscribers'.
    """

    def __init__(
        self, outbox: Outbox, link: MqttLink, window: int = 100, resend_after_s: float = 15.0, resettle_s: float = 10.0
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._resend_after_s = resend_after_s
        self._lock = threading.Lock()
        self._in_flight: dict[int, _InFlight] = {}
        self._early_acks: dict[int, tuple[bool, float]] = {}
        self._acked: list[int] = []
        self._cursor = 0
        self._link_lost_at: float | None = None
        self._replay_due = threading.Event()
        self._resettle_s = resettle_s
        self._second_replay: tuple[float, float] | None = None  # (when, replay what was delivered since)
        self._requested_since: float | None = None  # a consumer asked for what was delivered since (wall clock)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self.delivered = 0
        self.refused = 0
        self.replayed = 0
        link.add_ack_listener(self._on_ack)
        link.add_connection_listener(self._on_connection)

    def start(self) -> None:
        """Start draining."""
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (or timeout); returns whether it emptied."""
        deadline = time.monotonic() + timeout
        while self._outbox.depth() > 0:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            self._outbox.wake()
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Stop the thread after its current pass, deleting what was acknowledged so far."""
        self._stopping.set()
        self._outbox.wake()
        if self._thread.is_alive():
            self._thread.join(10)

    def request_replay(self, seconds: float) -> None:
        """Publish again what the broker acknowledged in the last `seconds` (within the outbox's replay window)."""
        since = time.time() - seconds
        with self._lock:
            if self._requested_since is None or since < self._requested_since:
                self._requested_since = since
        self._outbox.wake()

    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        with self._lock:
            return len(self._in_flight)

    def _on_ack(self, mid: int, accepted: bool, reason: str) -> None:
        """PUBACK from paho's network thread: remember it for the sender thread."""
        with self._lock:
            entry = self._in_flight.pop(mid, None)
            if entry is None:
                # The PUBACK can beat publish() returning the mid to us.
                self._early_acks[mid] = (accepted, time.monotonic())
                return
            self._record_ack(entry.seq, accepted, reason)
        self._outbox.wake()

    def _on_connection(self, connected: bool) -> None:
        """Note when the link went down; after it comes back, replay what the broker may have lost."""
        if connected:
            if self._link_lost_at is not None:
                since = self._link_lost_at - self._outbox.replay_window_s
                self._second_replay = (time.monotonic() + self._resettle_s, since)
            self._replay_due.set()
            self._outbox.wake()
        else:
            self._link_lost_at = time.time()

    def _record_ack(self, seq: int, accepted: bool, reason: str) -> None:
        """Queue seq for deletion; caller holds the lock."""
        self._acked.append(seq)
        if accepted:
            self.delivered += 1
        else:
            # Retrying a refused message forever would block everything behind it.
            self.refused += 1
            logger.error("broker refused outbox message %d (%s): dropped", seq, reason)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._delete_acked()
                if self._link.is_connected():
                    if self._replay_due.is_set():
                        self._replay_delivered()
                    self._replay_after_resettle()
                    self._replay_requested()
                    self._resend_stale()
                    self._publish_next()
            except Exception:
                logger.exception("outbox sender pass failed; retrying")
                time.sleep(1.0)
            self._outbox.wait_for_work(0.5)
        self._delete_acked()

    def _delete_acked(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
            now = time.monotonic()
            self._early_acks = {m: v for m, v in self._early_acks.items() if now - v[1] < _EARLY_ACK_TTL_S}
        if not acked:
            return
        try:
            self._outbox.mark_delivered(acked)
        except Exception:
            with self._lock:  # e.g. a full disk: keep them to mark on a later pass
                self._acked[:0] = acked
            raise

    def _publish_next(self) -> None:
        with self._lock:
            room = self._window - len(self._in_flight)
            flying = {entry.seq for entry in self._in_flight.values()}
        if room <= 0:
            return
        for item in self._outbox.pending(after_seq=self._cursor, limit=room + len(flying)):
            if item.seq not in flying:  # paho resends those itself
                if room <= 0 or not self._publish(item):
                    return
                room -= 1
            self._cursor = item.seq

    def _publish(self, item: OutboxItem) -> bool:
        """Hand one item to paho and track its mid; False when paho would not take it."""
        info = self._link.publish(item.topic, item.payload, qos=item.qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.warning("paho refused outbox message %d: rc %s", item.seq, info.rc)
            return False
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is not None:
                self._record_ack(item.seq, early[0], "acknowledged")
            else:
                self._in_flight[info.mid] = _InFlight(item.seq, time.monotonic())
        return True

    def _replay_delivered(self) -> None:
        """Publish again what was acknowledged within the replay window before the link was lost."""
        self._replay_due.clear()
        lost_at = self._link_lost_at or time.time()
        self._requeue(lost_at - self._outbox.replay_window_s, "acknowledged shortly before the link was lost")

    def _replay_after_resettle(self) -> None:
        """After a broker that lost its state, replay once more when subscribers have had time to return."""
        pending = self._second_replay
        if pending is None or time.monotonic() < pending[0]:
            return
        self._second_replay = None
        self._requeue(pending[1], "the broker had lost its sessions")

    def _replay_requested(self) -> None:
        """Replay what a consumer asked for with a Replay command."""
        with self._lock:
            since, self._requested_since = self._requested_since, None
        if since is not None:
            self._requeue(since, "the dashboard asked for them")

    def _requeue(self, since: float, why: str) -> None:
        """Put what was delivered since back in line, to be published again in order."""
        seqs = self._outbox.requeue_delivered(since)
        if seqs:
            logger.info("replaying %d results again: %s", len(seqs), why)
            self.replayed += len(seqs)
            self._cursor = min(self._cursor, seqs[0] - 1)

    def _resend_stale(self) -> None:
        """Publish again what stayed unacknowledged long after the latest (re)connect."""
        since = self._link.connected_since
        now = time.monotonic()
        if since is None or now - since < self._resend_after_s:
            return
        with self._lock:
            stale = {mid: e for mid, e in self._in_flight.items() if now - e.published_at > self._resend_after_s}
            for mid in stale:
                del self._in_flight[mid]
        if not stale:
            return
        logger.warning("republishing %d outbox messages with no PUBACK", len(stale))
        for item in self._outbox.fetch(e.seq for e in stale.values()):
            if not self._publish(item):
                return
