"""Local notification receivers for tests: an SMTP sink (aiosmtpd) and a webhook receiver (http.server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class MailSink:
    """Messages an aiosmtpd server on 127.0.0.1:port received."""

    port: int
    messages: list[Message] = field(default_factory=list)


@contextmanager
def smtp_sink() -> Iterator[MailSink]:
    """An aiosmtpd SMTP server on a free port that keeps every message."""
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
            sink.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    from broker_harness import free_port

    sink = MailSink(free_port())
    controller = Controller(Handler(), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class WebhookSink:
    """JSON bodies and headers a local HTTP server received; the first `fail_first` POSTs are answered 500."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0
    posts: int = 0


@contextmanager
def webhook_sink(fail_first: int = 0) -> Iterator[WebhookSink]:
    """A webhook receiver on a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.posts += 1
            if sink.posts <= sink.fail_first:
                self.send_response(500)
                self.end_headers()
                return
            sink.bodies.append(json.loads(body))
            sink.headers.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook", fail_first=fail_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
