"""Failed sign-ins are throttled in the database: every worker sees one count, and unknown usernames look known."""

from __future__ import annotations

import statistics
import time

from flask import Flask
from flask.testing import FlaskClient

from contracts.confs import Confs
from dashboard import create_app
from dashboard.models import User
from support.web_seed import csrf_from

LOCKED = "Too many failed sign-in attempts"


def _attempt(client: FlaskClient, username: str, password: str = "wrong password!") -> tuple[int, str]:
    token = csrf_from(client, "/login")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    return response.status_code, response.get_data(as_text=True)


def test_two_workers_share_one_count_for_unknown_usernames(app: Flask, confs: Confs) -> None:
    second = create_app(confs, TESTING=True)  # a second worker process's app over the same database
    try:
        workers = [app.test_client(), second.test_client()]
        statuses = [_attempt(workers[i % 2], "nobody-here")[0] for i in range(8)]
        assert statuses == [401, 401, 401, 401, 429, 429, 429, 429]
    finally:
        second.extensions["db"].dispose()


def test_known_and_unknown_usernames_are_answered_alike_from_any_address(app: Flask, admin_user: tuple[User, str]) -> None:
    outcomes: dict[str, list[tuple[int, bool]]] = {}
    for name in (admin_user[0].username, "ghost-user"):
        seen = []
        for attempt in range(7):
            client = app.test_client()
            client.environ_base["REMOTE_ADDR"] = f"10.0.0.{attempt + 1}"  # a new address each try
            status, page = _attempt(client, name)
            seen.append((status, LOCKED in page))
        outcomes[name] = seen
    assert outcomes[admin_user[0].username] == outcomes["ghost-user"]
    assert outcomes["ghost-user"][-1] == (429, True)


def test_unknown_and_locked_usernames_take_a_password_check_s_time(app: Flask, admin_user: tuple[User, str]) -> None:
    def timed(name: str) -> float:
        client = app.test_client()
        token = csrf_from(client, "/login")
        start = time.perf_counter()
        client.post("/login", data={"username": name, "password": "wrong password!", "csrf_token": token})
        return time.perf_counter() - start

    known = statistics.median(timed(admin_user[0].username) for _ in range(3))
    unknown = statistics.median(timed("no-such-user") for _ in range(3))
    for _ in range(5):
        timed("locked-out")
    locked = statistics.median(timed("locked-out") for _ in range(3))
    assert unknown > known / 3 and locked > known / 3, (known, unknown, locked)
