"""Real-Mosquitto test harness: render the project's broker config, run it, hand out clients.

Use the pytest fixtures from tests/conftest.py (`broker`, `broker_factory`, `session_broker`)
or call `make_broker(directory)` directly. A started broker accepts TCP on `port` (plain) and
`tls_port` (TLS, CA at `ca_path`), and has accounts `devA`, `devB` (Hospital/Lab1) and
`dashboard` unless told otherwise. Every process it starts is stopped by PID on `close()`.

    def test_node_reports(broker: BrokerHandle) -> None:
        watch = broker.collector("dashboard", f"{broker.location}/Devices/+/+/#")
        node = broker.client("devA", client_id="devA", clean_start=False, session_expiry=3600)
        publish_and_wait(node, broker.topic("devA", "Sensors"), b"{}")
        watch.wait_for(broker.topic("devA", "Sensors"))
        broker.kill(); broker.start()          # or stop() / restart() (graceful, persisted)
        broker.add_device("devC")              # passwd + ACL + SIGHUP on the live broker

Your own code under test connects with `broker.host`, `broker.port` (or `broker.tls_host`,
`broker.tls_port`, `broker.ca_path`) and `broker.credentials[user]`.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from mqtt_helpers import (  # noqa: F401  (re-exported for tests)
    MessageCollector,
    Received,
    Will,
    connect_client,
    publish_and_wait,
    session_present,
    subscribe_and_wait,
)

from broker_config import (
    BrokerSettings,
    GeneratedPaths,
    add_dashboard,
    add_device,
    reload_broker,
    render,
)

logger = logging.getLogger(__name__)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
TLS_HOST = "localhost"
DEFAULT_LOCATION = "Hospital"
DEFAULT_ZONE = "Lab1"
DEFAULT_DEVICES = ("devA", "devB")
DASHBOARD = "dashboard"
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the test process dies, so no broker outlives it (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@atexit.register
def _kill_leftovers() -> None:
    """Kill any broker still running when the interpreter exits."""
    for proc in list(_LIVE.values()):
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class DeviceInfo:
    """One device account and where it sits in the topic tree."""

    device_id: str
    location: str
    zone: str
    password: str = field(repr=False)

    def topic(self, channel: str) -> str:
        """`{location}/Devices/{zone}/{device}/{channel}`."""
        return f"{self.location}/Devices/{self.zone}/{self.device_id}/{channel}"


@dataclass
class BrokerHandle:
    """A Mosquitto run from the project's rendered config, with helpers to connect clients."""

    root: Path
    port: int
    tls_port: int
    location: str
    zone: str
    dashboard_user: str
    dashboard_app: str
    credentials: dict[str, str] = field(repr=False)
    devices: dict[str, DeviceInfo]
    host: str = HOST
    tls_host: str = TLS_HOST
    process: subprocess.Popen[bytes] | None = None
    _clients: list[mqtt.Client] = field(default_factory=list, repr=False)

    @property
    def paths(self) -> GeneratedPaths:
        """All generated files (conf, passwd, acl, registry, tls, data, pid, log)."""
        return GeneratedPaths(self.root)

    @property
    def ca_path(self) -> Path:
        """The CA certificate clients need for the TLS listener."""
        return self.paths.tls.ca_cert

    @property
    def pid(self) -> int | None:
        """PID of the running broker, or None."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def topic(self, device_id: str, channel: str) -> str:
        """Topic of a registered device's channel."""
        return self.devices[device_id].topic(channel)

    def app_topic(self, location: str | None = None) -> str:
        """The dashboard application's own Status topic."""
        return f"{location or self.location}/Applications/{self.dashboard_app}/Status"

    def log_text(self) -> str:
        """What the broker has logged so far."""
        return self.paths.log.read_text() if self.paths.log.exists() else ""

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        """Start mosquitto and wait until it accepts an authenticated client."""
        if self.is_running():
            return
        stderr = (self.root / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.paths.conf)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            preexec_fn=_die_with_parent,
        )
        stderr.close()
        _LIVE[self.process.pid] = self.process
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Poll both listeners, then log in as the dashboard."""
        deadline = time.monotonic() + timeout
        pending = [self.port, self.tls_port]
        while pending:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited early:\n{self._diagnostics()}")
            try:
                socket.create_connection((self.host, pending[0]), timeout=0.2).close()
                pending.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mosquitto not listening after {timeout}s:\n{self._diagnostics()}") from None
                time.sleep(0.01)
        probe = self.client(self.dashboard_user, client_id=f"probe-{uuid.uuid4().hex[:8]}", track=False)
        probe.disconnect()
        probe.loop_stop()

    def _diagnostics(self) -> str:
        """Broker stderr and log for error messages."""
        err = self.root / "stderr.log"
        return (err.read_text() if err.exists() else "") + self.log_text()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM, so persistence is written), SIGKILL if it hangs."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Stop abruptly with SIGKILL: nothing is saved since the last autosave."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        """Send sig to the broker by PID and reap it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        _LIVE.pop(proc.pid, None)

    def restart(self, timeout: float = 5.0) -> None:
        """Graceful stop, then start on the same ports with the same data."""
        self.stop(timeout)
        self.start(timeout)

    def reload(self) -> None:
        """SIGHUP the broker so it rereads passwd and ACL."""
        reload_broker(self.paths.pid_file)

    def add_device(
        self, device_id: str, location: str | None = None, zone: str | None = None, timeout: float = 5.0
    ) -> DeviceInfo:
        """Register a device on the live broker (passwd + ACL + SIGHUP) and wait until it can log in."""
        location, zone = location or self.location, zone or self.zone
        password = add_device(self.root, device_id, location, zone)
        info = DeviceInfo(device_id, location, zone, password)
        self.devices[device_id], self.credentials[device_id] = info, password
        if self.is_running():
            self.reload()
            self._wait_login(device_id, timeout)
        return info

    def _wait_login(self, user: str, timeout: float) -> None:
        """Retry a login until the reloaded password file accepts user."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe = self.client(user, client_id=f"probe-{uuid.uuid4().hex[:8]}", track=False, timeout=1.0)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                continue
            probe.disconnect()
            probe.loop_stop()
            return

    def client(
        self,
        user: str | None,
        *,
        password: str | None = None,
        tls: bool = False,
        track: bool = True,
        **kwargs: Any,
    ) -> mqtt.Client:
        """A connected paho client (loop running) as user; None means anonymous.

        Keyword arguments go to `connect_client` (protocol, client_id, clean_start,
        session_expiry, will, timeout, ca_certs). Raises ConnectionRefusedError with the reason.
        """
        if password is None and user is not None:
            password = self.credentials[user]
        if tls:
            kwargs.setdefault("ca_certs", self.ca_path)
        host, port = (self.tls_host, self.tls_port) if tls else (self.host, self.port)
        client = connect_client(host, port, user, password, tls=tls, **kwargs)
        if track:
            self._clients.append(client)
        return client

    def collector(self, user: str, topics: list[str] | str, qos: int = 1, **kwargs: Any) -> MessageCollector:
        """A connected client as user, subscribed to topics, recording what it receives."""
        collector = MessageCollector()
        kwargs.setdefault("on_message", collector.on_message)
        collector.client = self.client(user, **kwargs)
        collector.subscribe([topics] if isinstance(topics, str) else topics, qos)
        return collector

    def close_clients(self) -> None:
        """Disconnect every client made through this handle."""
        while self._clients:
            client = self._clients.pop()
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        """Disconnect clients and stop the broker."""
        self.close_clients()
        self.stop()


@contextmanager
def broker_pool(tmp_path_factory: Any) -> Iterator[Callable[..., BrokerHandle]]:
    """A factory of started brokers on free ports (skips without mosquitto); all are closed on exit."""
    import pytest

    if not shutil.which(MOSQUITTO):
        pytest.skip(f"mosquitto not found at {MOSQUITTO}")
    handles: list[BrokerHandle] = []

    def factory(**kwargs: Any) -> BrokerHandle:
        handle = make_broker(tmp_path_factory.mktemp("broker"), **kwargs)
        handles.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in handles:
            handle.close()


def make_broker(
    directory: Path,
    devices: tuple[str, ...] = DEFAULT_DEVICES,
    location: str = DEFAULT_LOCATION,
    zone: str = DEFAULT_ZONE,
    dashboard_user: str = DASHBOARD,
    dashboard_app: str = DASHBOARD,
    start: bool = True,
    attempts: int = 3,
    settings: dict[str, Any] | None = None,
) -> BrokerHandle:
    """Render a config with free ports and fresh accounts into directory, and start the broker.

    settings overrides `broker_config.BrokerSettings` fields, e.g. {"max_queued_messages": 5}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    credentials = {dashboard_user: add_dashboard(directory, dashboard_user, dashboard_app, (location,))}
    infos = {}
    for device_id in devices:
        credentials[device_id] = add_device(directory, device_id, location, zone)
        infos[device_id] = DeviceInfo(device_id, location, zone, credentials[device_id])
    for attempt in range(attempts):
        handle = _render_handle(directory, location, zone, dashboard_user, dashboard_app, credentials, infos, settings)
        if not start:
            return handle
        try:
            handle.start()
            return handle
        except (RuntimeError, TimeoutError):
            handle.kill()
            # Another process may have taken a port between free_port() and bind(): try new ones.
            if attempt == attempts - 1 or "Address already in use" not in handle._diagnostics():
                raise
    raise AssertionError("unreachable")


def _render_handle(
    directory: Path,
    location: str,
    zone: str,
    dashboard_user: str,
    dashboard_app: str,
    credentials: dict[str, str],
    devices: dict[str, DeviceInfo],
    overrides: dict[str, Any] | None = None,
) -> BrokerHandle:
    """Render the config on fresh free ports and build the handle."""
    port, tls_port = free_port(), free_port()
    while tls_port == port:
        tls_port = free_port()
    paths = GeneratedPaths(directory)
    # Tests run as root here; an unprivileged broker user could not enter pytest's private tmp dirs.
    run_as = "root" if os.geteuid() == 0 else os.environ.get("USER", "mosquitto")
    # Tests watch as several `dashboard` clients at once, which the production client-id binding would refuse:
    # it stays off here, and tests of the binding ask for it with settings={"bind_client_id": True}.
    defaults = {
        "run_as": run_as, "tls_bind": HOST, "log_dest": f"file {paths.log}", "autosave_interval": 1,
        "bind_client_id": False,
    }
    settings = BrokerSettings(**{**defaults, **(overrides or {})})
    render(directory, port, tls_port, settings)
    return BrokerHandle(directory, port, tls_port, location, zone, dashboard_user, dashboard_app, credentials, devices)
