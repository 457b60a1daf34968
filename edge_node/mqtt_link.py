"""The node's MQTT connection (paho-mqtt 2): credentials, TLS, persistent session, retained will and birth."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contracts.messages import utc_now

logger = logging.getLogger(__name__)

MessageHandler = Callable[[mqtt.MQTTMessage], None]
AckListener = Callable[[int, bool, str], None]
ConnectionListener = Callable[[bool], None]
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class LinkSettings:
    """Everything needed to reach the broker as one client."""

    host: str
    port: int
    client_id: str
    username: str
    password: str | None
    status_topic: str
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    subscriptions: tuple[str, ...] = ()
    min_reconnect_delay_s: int = 1
    max_reconnect_delay_s: int = 30
    max_inflight: int = 100
    session_expiry_s: int = SESSION_EXPIRY_S


@dataclass
class _Listeners:
    acks: list[AckListener] = field(default_factory=list)
    connection: list[ConnectionListener] = field(default_factory=list)


class MqttLink:
    """Owns one paho client: reconnects with backoff, re-subscribes, and keeps the Status topic true.

    `status_payload(online, session_started)` is called for a fresh last will (OFFLINE, retained) before
    every connection attempt and for the birth (ONLINE, retained) on every connect; both carry the time
    the attempt began, so consumers can tell a will from the birth of a later connection.
    """

    def __init__(self, settings: LinkSettings, status_payload: Callable[[bool, datetime], bytes]) -> None:
        self.settings = settings
        self._status_payload = status_payload
        self.session_started = utc_now()
        self._listeners = _Listeners()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subscriptions: set[int] = set()
        self.connected_since: float | None = None
        self.session_present = False
        self.connect_count = 0
        self._stopping = False
        self._client = self._build_client()

    def _build_client(self) -> mqtt.Client:
        """A paho MQTT 5 client with credentials, TLS and the callbacks wired."""
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(s.min_reconnect_delay_s, s.max_reconnect_delay_s)
        client.max_inflight_messages_set(s.max_inflight)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.enable_logger(logging.getLogger(__name__ + ".paho"))
        return client

    def add_route(self, topic_filter: str, handler: MessageHandler) -> None:
        """Send messages matching topic_filter to handler (errors in it are logged, never raised)."""

        def callback(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            try:
                handler(message)
            except Exception:
                logger.exception("handler for %s failed", message.topic)

        self._client.message_callback_add(topic_filter, callback)

    def add_ack_listener(self, listener: AckListener) -> None:
        """Call listener(mid, accepted, reason) on every PUBACK."""
        self._listeners.acks.append(listener)

    def add_connection_listener(self, listener: ConnectionListener) -> None:
        """Call listener(connected) on every connect and disconnect."""
        self._listeners.connection.append(listener)

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting with backoff until stop()."""
        s = self.settings
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = s.session_expiry_s
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=properties)
        self._client.loop_start()

    def is_connected(self) -> bool:
        """True while the broker has accepted the connection."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or timeout."""
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the broker has acknowledged every subscription of the current connection, or timeout."""
        return self._subscribed.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Hand a message to paho (queued in memory while disconnected); returns its info with the mid."""
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_status(self) -> None:
        """Publish the retained ONLINE status again (after a model change)."""
        self.publish(self.settings.status_topic, self._status_payload(True, self.session_started), qos=1, retain=True)

    def stop(self, timeout: float = 5.0) -> bool:
        """Publish the retained OFFLINE status, wait for its PUBACK, disconnect; returns whether it was acked."""
        acked = False
        self._stopping = True
        if self.is_connected():
            info = self.publish(
                self.settings.status_topic, self._status_payload(False, self.session_started), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout)
                acked = info.is_published()
            except (RuntimeError, ValueError) as exc:
                logger.warning("OFFLINE status not delivered: %s", exc)
        # paho logs a spurious "not connected" error while its loop winds down after disconnect().
        self._client.disable_logger()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        return acked

    def _on_pre_connect(self, client: mqtt.Client, _userdata: object) -> None:
        self.session_started = utc_now()
        client.will_set(self.settings.status_topic, self._status_payload(False, self.session_started), qos=1, retain=True)

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            logger.error("broker refused the connection as %s: %s", self.settings.username, reason)
            return
        logger.info("connected to %s:%d (session present: %s)", self.settings.host, self.settings.port, flags.session_present)
        self.session_present = bool(flags.session_present)
        self._subscribed.clear()
        self._pending_subscriptions.clear()
        for topic_filter in self.settings.subscriptions:
            result, mid = client.subscribe(topic_filter, qos=1)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.error("subscribing to %s failed: %s", topic_filter, mqtt.error_string(result))
            elif mid is not None:
                self._pending_subscriptions.add(mid)
        if not self.settings.subscriptions:
            self._subscribed.set()
        client.publish(self.settings.status_topic, self._status_payload(True, self.session_started), qos=1, retain=True)
        self.connected_since = time.monotonic()
        self.connect_count += 1
        self._connected.set()
        self._notify_connection(True)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self.connected_since = None
        if was_connected:
            if not self._stopping:
                logger.warning("disconnected from the broker: %s", reason)
            self._notify_connection(False)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: object, mid: int, reasons: list[ReasonCode], _props: object
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                logger.error("broker refused subscription %d: %s", mid, reason)
        self._pending_subscriptions.discard(mid)
        if not self._pending_subscriptions and not any(reason.is_failure for reason in reasons):
            self._subscribed.set()

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int, reason: ReasonCode, _props: object) -> None:
        for listener in self._listeners.acks:
            listener(mid, not reason.is_failure, str(reason))

    def _notify_connection(self, connected: bool) -> None:
        for listener in self._listeners.connection:
            try:
                listener(connected)
            except Exception:
                logger.exception("connection listener failed")

