"""docker/healthcheck.py: healthy only when the URL answers with an accepted status."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from deploy.compose_support import ROOT


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 405)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _probe(*args: str) -> int:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py"), *args], capture_output=True, timeout=30
    ).returncode


def test_accepted_status_is_healthy(server: str) -> None:
    assert _probe(f"{server}/ok") == 0
    assert _probe(f"{server}/Inference", "405") == 0


def test_unexpected_status_is_unhealthy(server: str) -> None:
    assert _probe(f"{server}/Inference") == 1


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert _probe(f"http://127.0.0.1:{port}/") == 1


def test_missing_url_or_bad_status_is_a_usage_error() -> None:
    assert _probe() == 2
    assert _probe("http://127.0.0.1:1/", "ok") == 2
