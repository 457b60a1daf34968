"""One epoll thread drives every virtual node's paho client (paho's own loop uses select(), capped at fd 1024)."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_node.mqtt_link import LinkSettings, MqttLink

logger = logging.getLogger(__name__)

_READ = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
_MISC_INTERVAL_S = 1.0


@dataclass
class _Attached:
    client: mqtt.Client
    min_delay_s: float
    max_delay_s: float
    delay_s: float = 0.0
    next_attempt: float = 0.0
    detached: bool = False


class SharedMqttLoop:
    """Reads, writes, keepalives and reconnects (with backoff) for many paho clients in one thread.

    `tick`, if given, runs on the loop thread after every poll and returns the seconds until it wants to run
    again: publishing from the loop thread avoids paho's racy cross-thread write registration.
    """

    def __init__(self, tick: Callable[[], float] | None = None) -> None:
        self._tick = tick
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._by_fd: dict[int, _Attached] = {}
        self._attached: list[_Attached] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-mqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._epoll.close()

    def attach(self, client: mqtt.Client, min_delay_s: float, max_delay_s: float) -> None:
        """Take over a client whose connect_async() was called; it connects on the loop thread."""
        entry = _Attached(client, min_delay_s, max_delay_s)
        client.on_socket_open = lambda c, u, sock: self._opened(entry, sock)
        client.on_socket_close = lambda c, u, sock: self._closed(entry, sock)
        client.on_socket_register_write = lambda c, u, sock: self._watch(sock, write=True)
        client.on_socket_unregister_write = lambda c, u, sock: self._watch(sock, write=False)
        with self._lock:
            self._attached.append(entry)

    def detach(self, client: mqtt.Client) -> None:
        """Stop reconnecting a client (after its disconnect)."""
        with self._lock:
            for entry in self._attached:
                if entry.client is client:
                    entry.detached = True

    def _opened(self, entry: _Attached, sock: Any) -> None:
        with self._lock:
            self._by_fd[sock.fileno()] = entry
        self._epoll.register(sock.fileno(), _READ)

    def _closed(self, entry: _Attached, sock: Any) -> None:
        fd = sock.fileno()
        with self._lock:
            # The fd number may already belong to another client's new socket: leave that one alone.
            if self._by_fd.get(fd) is not entry:
                return
            del self._by_fd[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _rearm(self, entry: _Attached, sock: Any) -> None:
        """Make sure a live socket is watched, for writing too if paho has output queued.

        paho's own "write registered" flag is not thread-safe: a publish from another thread can
        race the loop's drain and leave output with nobody watching for writability.
        """
        fd = sock.fileno()
        with self._lock:
            known = self._by_fd.get(fd) is entry
            self._by_fd[fd] = entry
        if not known:
            try:
                self._epoll.register(fd, _READ)
            except FileExistsError:
                pass
            except (OSError, ValueError):
                return
        if entry.client.want_write():
            self._watch(sock, write=True)

    def _watch(self, sock: Any, write: bool) -> None:
        try:
            self._epoll.modify(sock.fileno(), _READ | (select.EPOLLOUT if write else 0))
        except (OSError, ValueError):
            pass  # closed meanwhile

    def _run(self) -> None:
        last_misc, timeout = 0.0, 0.2
        while not self._stop.is_set():
            for fd, events in self._epoll.poll(timeout):
                with self._lock:
                    entry = self._by_fd.get(fd)
                if entry is None:
                    continue
                if events & _READ:
                    entry.client.loop_read()
                if events & select.EPOLLOUT and entry.client.socket() is not None:
                    entry.client.loop_write()
            if self._tick is not None:
                timeout = self._run_tick()
            now = time.monotonic()
            if now - last_misc >= _MISC_INTERVAL_S:
                last_misc = now
                self._housekeeping(now)

    def _run_tick(self) -> float:
        """The tick's wish for the next poll timeout, within 0-0.2 s; a failing tick is logged, not fatal."""
        try:
            return min(0.2, max(0.0, self._tick()))  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the loop must keep serving every client
            logger.exception("shared loop tick failed")
            return 0.2

    def _housekeeping(self, now: float) -> None:
        """Keepalive pings for connected clients; reconnect (with backoff) those without a socket."""
        with self._lock:
            entries = list(self._attached)
        for entry in entries:
            if entry.detached:
                continue
            sock = entry.client.socket()
            if sock is not None:
                self._rearm(entry, sock)
                entry.client.loop_misc()
                if entry.client.is_connected():
                    entry.delay_s = 0.0
            elif now >= entry.next_attempt:
                self._reconnect(entry, now)

    @staticmethod
    def _reconnect(entry: _Attached, now: float) -> None:
        entry.delay_s = min(entry.max_delay_s, max(entry.min_delay_s, entry.delay_s * 2))
        entry.next_attempt = now + entry.delay_s
        try:
            entry.client.reconnect()
        except (OSError, socket.timeout, ValueError) as exc:
            logger.debug("reconnect failed: %s", exc)


class SharedLoopLink(MqttLink):
    """An MqttLink whose network I/O runs on a SharedMqttLoop instead of its own paho thread."""

    def __init__(self, settings: LinkSettings, status_payload: Any, loop: SharedMqttLoop) -> None:
        super().__init__(settings, status_payload)
        self._shared_loop = loop

    def start(self) -> None:
        """Prepare the connection (persistent session, as MqttLink does); the shared loop connects it."""
        s = self.settings
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = s.session_expiry_s
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=properties)
        self._shared_loop.attach(self._client, s.min_reconnect_delay_s, s.max_reconnect_delay_s)

    def stop(self, timeout: float = 5.0) -> bool:
        """Tell the loop not to reconnect, then OFFLINE and disconnect."""
        self._shared_loop.detach(self._client)
        return super().stop(timeout)
