"""A small TCP proxy that can cut a link (close every connection and refuse new ones) and restore it."""

from __future__ import annotations

import logging
import selectors
import socket
import threading

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream address; `cut()` and `restore()` simulate a network outage."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.connections_made = 0
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def start(self) -> "TcpProxy":
        """Listen (on a free port unless one was given) and start forwarding."""
        self._listen()
        self._thread.start()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ, "accept")

    def cut(self) -> None:
        """Close every forwarded connection and the listener: new connections are refused."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._close(sock)
        logger.info("proxy on %d cut", self.port)

    def restore(self) -> None:
        """Listen again on the same port."""
        self._listen()
        logger.info("proxy on %d restored", self.port)

    def is_cut(self) -> bool:
        """True while new connections are refused."""
        with self._lock:
            return self._listener is None

    def stop(self) -> None:
        """Cut everything and end the forwarding thread."""
        self._stopping.set()
        self.cut()
        self._thread.join(5)
        self._selector.close()

    def _close(self, sock: socket.socket) -> None:
        """Close one side and its peer; caller holds the lock."""
        peer = self._pairs.pop(sock, None)
        for side in (sock, peer):
            if side is None:
                continue
            self._pairs.pop(side, None)
            try:
                self._selector.unregister(side)
            except (KeyError, ValueError):
                pass
            side.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs[client], self._pairs[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ, "data")
        self._selector.register(upstream, selectors.EVENT_READ, "data")
        self.connections_made += 1

    def _forward(self, sock: socket.socket) -> None:
        peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.setblocking(True)  # small MQTT traffic: a blocking send keeps the proxy simple
                peer.sendall(data)
                peer.setblocking(False)
                return
        except OSError:
            pass
        self._close(sock)

    def _run(self) -> None:
        while not self._stopping.is_set():
            events = self._selector.select(timeout=0.1)
            with self._lock:
                for key, _ in events:
                    if key.data == "accept" and key.fileobj is self._listener:
                        self._accept()
                    elif key.data == "data" and key.fileobj in self._pairs:
                        self._forward(key.fileobj)  # type: ignore[arg-type]
