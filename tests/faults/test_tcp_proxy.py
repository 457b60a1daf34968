"""The fault suite's TCP proxy forwards, cuts (closes and refuses) and restores on the same port."""

from __future__ import annotations

import socket
import threading

import pytest

from faults.tcp_proxy import TcpProxy


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")],
                             daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def test_proxy_forwards_cuts_and_restores(echo_server: int) -> None:
    proxy = TcpProxy("127.0.0.1", echo_server).start()
    try:
        link = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        link.sendall(b"hello")
        assert link.recv(5) == b"hello"
        proxy.cut()
        assert link.recv(5) == b"", "a cut must close live connections"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.restore()
        again = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        again.sendall(b"back")
        assert again.recv(4) == b"back" and proxy.connections_made == 2
        again.close()
        link.close()
    finally:
        proxy.stop()
