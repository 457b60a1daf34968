"""Slow clients and open live streams cannot starve the web app served by gunicorn as the demo and compose run it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from broker_harness import free_port
from support.web_server import WebServer, closed_by_server, sign_in, slow_header_client

from contracts.confs import Confs
from dashboard import create_app
from dashboard.migrations import upgrade_database
from dashboard.services import tokens, users
from tests.dashboard.conftest import make_confs

SLOW_CLIENTS = 50
STREAMS = 20
VIEWERS = 4


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebServer, list[tuple[str, str]], str]]:
    """gunicorn with one worker (the demo's) over a seeded database; viewers' credentials and an API token."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    confs: Confs = make_confs(tmp_path)
    confs_path = tmp_path / "confs.json"
    confs_path.write_text(json.dumps(confs.model_dump(mode="json")))
    app = create_app(confs)
    db = app.extensions["db"]
    upgrade_database(db.engine)
    with db.session() as session:
        viewers = [users.create_user(session, f"viewer{i}", "viewer") for i in range(VIEWERS + 1)]
        token = tokens.create_api_token(session, viewers[0][0], "probe")
    credentials = [(user.username, password) for user, password in viewers]
    db.dispose()
    server = WebServer(confs_path, free_port(), tmp_path / "gunicorn.log", workers=1)
    try:
        yield server, credentials, token
    finally:
        server.stop()


def _timed_get(url: str, **kw: object) -> tuple[int, float]:
    start = time.monotonic()
    response = requests.get(url, timeout=5, **kw)  # type: ignore[arg-type]
    return response.status_code, time.monotonic() - start


def test_slow_headers_and_open_streams_do_not_starve_login_or_the_api(
    served: tuple[WebServer, list[tuple[str, str]], str],
) -> None:
    server, credentials, token = served
    cookies = [sign_in(server.base_url, name, password) for name, password in credentials]
    slow = [slow_header_client(server.port) for _ in range(SLOW_CLIENTS)]
    with ThreadPoolExecutor(max_workers=STREAMS + 8) as pool:
        opened = list(pool.map(lambda i: requests.get(f"{server.base_url}/stream/fleet", headers=cookies[i % VIEWERS],
                                                      stream=True, timeout=10), range(STREAMS)))
        # one viewer opening many more is held to the per-user bound instead of taking the worker
        greedy = list(pool.map(lambda _: requests.get(f"{server.base_url}/stream/results", headers=cookies[VIEWERS],
                                                      stream=True, timeout=10), range(8)))
    try:
        assert [r.status_code for r in opened] == [200] * STREAMS, server.log_text()
        assert sorted(r.status_code for r in greedy) == [200] * 6 + [429] * 2
        for _ in range(3):
            status, took = _timed_get(f"{server.base_url}/login")
            assert status == 200 and took < 1.0, f"/login took {took:.2f}s"
            status, took = _timed_get(f"{server.base_url}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
            assert status == 200 and took < 1.0, f"the API took {took:.2f}s"
            time.sleep(0.5)
        # headers must arrive within gunicorn's keepalive (5 s): slowloris connections are dropped
        assert all(closed_by_server(client, 8.0) for client in slow[:5])
    finally:
        for response in opened + greedy:
            response.close()
        for client in slow:
            client.close()
