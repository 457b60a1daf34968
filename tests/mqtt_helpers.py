"""paho-mqtt 2 test clients: connect with credentials, wills and sessions; publish, subscribe and collect."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Will:
    """A last-will message set at connect time."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Received:
    """One message a client received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Acks:
    """Per-client record of CONNACK, SUBACK and PUBACK results, for event-based waiting."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.connack: Any = None
        self.subacks: dict[int, list[Any]] = {}
        self.pubacks: dict[int, Any] = {}

    def put(self, attr: str, key: int | None, value: Any) -> None:
        """Store a result and wake waiters."""
        with self.cond:
            if key is None:
                setattr(self, attr, value)
            else:
                getattr(self, attr)[key] = value
            self.cond.notify_all()

    def wait(self, probe: Any, timeout: float, what: str) -> Any:
        """Wait until probe() is not None and return it."""
        with self.cond:
            if not self.cond.wait_for(lambda: probe() is not None, timeout):
                raise TimeoutError(f"no {what} within {timeout}s")
            return probe()


def _acks(client: mqtt.Client) -> _Acks:
    """The _Acks a client made by connect_client carries as user data."""
    acks = client.user_data_get()
    if not isinstance(acks, _Acks):
        raise TypeError("client was not made by connect_client")
    return acks


def connect_client(
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    *,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry: int | None = None,
    will: Will | None = None,
    tls: bool = False,
    ca_certs: Path | str | None = None,
    on_message: Any = None,
    timeout: float = 5.0,
) -> mqtt.Client:
    """Connect a paho 2 client and start its loop; ConnectionRefusedError if the broker says no."""
    v5 = protocol == mqtt.MQTTv5
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
        protocol=protocol,
        clean_session=None if v5 else clean_start,
        userdata=_Acks(),
    )
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(ca_certs=str(ca_certs) if ca_certs else None)
    if will is not None:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    client.on_connect = lambda c, acks, flags, rc, props: acks.put("connack", None, (rc, flags))
    client.on_subscribe = lambda c, acks, mid, rcs, props: acks.put("subacks", mid, list(rcs))
    client.on_publish = lambda c, acks, mid, rc, props: acks.put("pubacks", mid, rc)
    if on_message is not None:
        client.on_message = on_message
    props = None
    if v5 and session_expiry is not None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry
    client.connect(
        host, port, keepalive=10, clean_start=clean_start if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props
    )
    # Wait for CONNACK in this thread: a background loop would keep retrying a refused login.
    deadline = time.monotonic() + timeout
    acks = _acks(client)
    while acks.connack is None:
        if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and acks.connack is None:
            raise ConnectionRefusedError(f"{user!r}: connection closed before CONNACK")
        if time.monotonic() > deadline:
            client.disconnect()
            raise TimeoutError(f"no CONNACK within {timeout}s")
    rc, _ = acks.connack
    if rc.is_failure:
        client.disconnect()
        raise ConnectionRefusedError(f"{user!r} refused: {rc}")
    client.loop_start()
    return client


def session_present(client: mqtt.Client) -> bool:
    """Whether the broker resumed a stored session on connect."""
    return bool(_acks(client).connack[1].session_present)


def subscribe_and_wait(client: mqtt.Client, topics: list[str], qos: int = 1, timeout: float = 5.0) -> list[Any]:
    """Subscribe and return the SUBACK reason codes (failures included)."""
    _, mid = client.subscribe([(topic, qos) for topic in topics])
    assert mid is not None, "not connected"
    acks = _acks(client)
    return list(acks.wait(lambda: acks.subacks.get(mid), timeout, "SUBACK"))


def publish_and_wait(
    client: mqtt.Client, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False, timeout: float = 5.0
) -> Any:
    """Publish and return the PUBACK reason code (MQTT 5 reports a denied publish as Not authorized)."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    acks = _acks(client)
    return acks.wait(lambda: acks.pubacks.get(info.mid), timeout, "PUBACK")


class MessageCollector:
    """Records every message a client receives; wait on them without sleeping."""

    def __init__(self) -> None:
        self.client: mqtt.Client | None = None
        self.messages: list[Received] = []
        self.granted: list[Any] = []
        self._cond = threading.Condition()

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """paho callback: record the message."""
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def subscribe(self, topics: list[str], qos: int = 1) -> list[Any]:
        """Subscribe the collector's client; returns and keeps the SUBACK reason codes."""
        assert self.client is not None
        self.granted = subscribe_and_wait(self.client, topics, qos)
        return self.granted

    def wait_for(
        self,
        topic: str | None = None,
        timeout: float = 5.0,
        payload: bytes | None = None,
        where: Callable[[Received], bool] | None = None,
    ) -> Received:
        """The first message matching topic, payload and where (each if given); TimeoutError if none comes."""

        def match() -> Received | None:
            for msg in self.messages:
                if (
                    (topic is None or msg.topic == topic)
                    and (payload is None or msg.payload == payload)
                    and (where is None or where(msg))
                ):
                    return msg
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: match() is not None, timeout):
                raise TimeoutError(f"no message on {topic!r} within {timeout}s; got {self.topics()}")
            result = match()
            assert result is not None
            return result

    def topics(self) -> list[str]:
        """Topics of everything received so far, in order."""
        with self._cond:
            return [msg.topic for msg in self.messages]
