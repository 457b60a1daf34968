"""The gevent worker the dashboard runs under gunicorn, with a bound on how slowly a client may send or read."""
from __future__ import annotations

import socket
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

# A socket that neither sends nor accepts a byte for this long is dropped (slow bodies, stalled readers).
IO_IDLE_TIMEOUT_S = 15.0


class DashboardWorker(GeventWorker):
    """GeventWorker whose connections time out when idle mid-request (headers are bounded by keepalive)."""

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        """Serve one connection with an idle timeout on every read and write."""
        client.settimeout(IO_IDLE_TIMEOUT_S)
        super().handle(listener, client, addr)
