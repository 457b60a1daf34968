"""Failed sign-ins are throttled in the database: every worker sees one count, and unknown usernames look known."""

from __future__ import annotations

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
    def timed(name: str) -> tuple[int, float]:
        client = app.test_client()
        token = csrf_from(client, "/login")
        start = time.perf_counter()
        response = client.post("/login", data={"username": name, "password": "wrong password!", "csrf_token": token})
        return response.status_code, time.perf_counter() - start

    for _ in range(5):
        timed("locked-out")
    # Interleaved rounds, so a burst of load on a busy machine slows all three alike, and the fastest of each:
    # noise only ever adds time, while a refusal that skipped the hash would be fast in every round.
    names = {"known": admin_user[0].username, "unknown": "no-such-user", "locked": "locked-out"}
    rounds = [{kind: timed(name) for kind, name in names.items()} for _ in range(4)]
    assert [r["known"][0] for r in rounds] == [401] * 4 and [r["unknown"][0] for r in rounds] == [401] * 4
    assert [r["locked"][0] for r in rounds] == [429] * 4, "locked-out was not locked, so its time proves nothing"
    known, unknown, locked = (min(r[kind][1] for r in rounds) for kind in names)
    assert unknown > known / 3 and locked > known / 3, (known, unknown, locked)
