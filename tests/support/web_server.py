"""The dashboard web app as production runs it: gunicorn with dashboard.gunicorn_conf, on a free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


class WebServer:
    """A gunicorn process serving `dashboard:create_app()` with the given confs file; stopped by PID."""

    def __init__(self, confs_path: Path, port: int, log: Path, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
        environ.update(env or {}, DASHBOARD_CONFS=str(confs_path))
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "python:dashboard.gunicorn_conf",
                 "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "dashboard:create_app()"],
                cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.base_url}/login", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn did not answer /login within {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        """The tail of gunicorn's log."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM gunicorn (the arbiter stops its workers), SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def sign_in(base_url: str, username: str, password: str) -> dict[str, str]:
    """Sign in through the login form; the Cookie header of the session (the cookie is Secure, the URL is not)."""
    with requests.Session() as session:
        page = session.get(f"{base_url}/login", timeout=10)
        token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.text)
        assert token, "no CSRF token on the login page"
        cookie = {"Cookie": f"session={session.cookies.get('session')}"}
        response = requests.post(f"{base_url}/login", headers=cookie, allow_redirects=False, timeout=10,
                                 data={"username": username, "password": password, "csrf_token": token.group(1)})
    assert response.status_code == 302, f"sign-in as {username} answered {response.status_code}"
    return {"Cookie": f"session={response.cookies.get('session')}"}


def slow_header_client(port: int) -> socket.socket:
    """A connection that sends the start of a request and then nothing (a slowloris)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    return client


def closed_by_server(client: socket.socket, wait_s: float) -> bool:
    """True when the server closed the connection within wait_s."""
    client.settimeout(wait_s)
    try:
        client.recv(1024)  # b"" (closed) or an error page: either way the server gave up on it
        return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True
