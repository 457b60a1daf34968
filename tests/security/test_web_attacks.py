"""Attacks on the dashboard web app and API as gunicorn serves it (issue 11 items 5-8, 10, unsigned uploads)."""

from __future__ import annotations

import io
import re
import stat
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from security.stack import Scale, SecurityStack
from support.web_server import closed_by_server, slow_header_client

HUGE = str(10**20)
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
BOMB_BYTES = 200 * 1024 * 1024  # under the per-member limit, so only the signature can stop it


class _Zeros(io.RawIOBase):
    """size zero bytes, read in chunks (the bomb is never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _csrf(url: str, headers: dict[str, str], path: str = "/") -> str:
    page = requests.get(f"{url}{path}", headers=headers, timeout=10)
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def test_slow_headers_and_open_streams_do_not_starve_login(stack: SecurityStack, scale: Scale) -> None:
    cookies = [stack.cookie(name) for name in stack.viewers]
    slow = [slow_header_client(stack.web.port) for _ in range(scale.slow_clients)]
    with ThreadPoolExecutor(max_workers=scale.streams) as pool:
        streams = list(pool.map(lambda i: requests.get(f"{stack.url}/stream/fleet", headers=cookies[i % len(cookies)],
                                                       stream=True, timeout=10), range(scale.streams)))
    try:
        assert all(r.status_code == 200 for r in streams)
        for _ in range(3):
            start = time.monotonic()
            assert requests.get(f"{stack.url}/login", timeout=5).status_code == 200
            assert time.monotonic() - start < 1.0
            start = time.monotonic()
            assert requests.get(f"{stack.url}/api/v1/devices", headers=stack.bearer(), timeout=5).status_code == 200
            assert time.monotonic() - start < 1.0
        assert closed_by_server(slow[0], 8.0), "a request's headers may take forever"
    finally:
        for response in streams:
            response.close()
        for client in slow:
            client.close()


def test_one_viewer_cannot_open_unbounded_streams(stack: SecurityStack) -> None:
    cookie = stack.cookie("viewer")
    with ThreadPoolExecutor(max_workers=20) as pool:
        streams = list(pool.map(lambda _: requests.get(f"{stack.url}/stream/results", headers=cookie, stream=True,
                                                       timeout=10), range(20)))
    try:
        assert sum(r.status_code == 429 for r in streams) >= 20 - 2 * 6  # at most 6 per worker
    finally:
        for response in streams:
            response.close()


def test_a_cookie_saved_before_logout_is_dead_after_it(stack: SecurityStack) -> None:
    cookie = stack.cookie("viewer")
    assert requests.get(f"{stack.url}/", headers=cookie, allow_redirects=False, timeout=10).status_code == 200
    token = _csrf(stack.url, cookie)
    requests.post(f"{stack.url}/logout", headers=cookie, data={"csrf_token": token}, allow_redirects=False, timeout=10)
    assert requests.get(f"{stack.url}/", headers=cookie, allow_redirects=False, timeout=10).status_code == 302


def _attempt(url: str, username: str) -> tuple[int, bool]:
    """One failed sign-in from a fresh client: its status and whether it said the name is locked."""
    with requests.Session() as session:
        page = session.get(f"{url}/login", timeout=10)
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        cookie = {"Cookie": f"session={session.cookies.get('session')}"}
        response = requests.post(f"{url}/login", headers=cookie, timeout=20, allow_redirects=False,
                                 data={"username": username, "password": "not the password", "csrf_token": token})
    return response.status_code, "Too many failed" in response.text


def test_two_workers_give_no_extra_login_tries(stack: SecurityStack) -> None:
    statuses = [_attempt(stack.url, "no-such-user-1")[0] for _ in range(10)]
    assert statuses == [401] * 4 + [429] * 6


def test_unknown_usernames_are_answered_like_known_ones(stack: SecurityStack) -> None:
    known = [_attempt(stack.url, "bait") for _ in range(7)]
    unknown = [_attempt(stack.url, "no-such-user-2") for _ in range(7)]
    assert known == unknown


def test_huge_numbers_in_routes_and_queries_are_400_or_404(stack: SecurityStack) -> None:
    cookie = stack.cookie("admin")
    for path in (f"/models/{HUGE}", f"/rollouts/{HUGE}", f"/packages/{HUGE}/x.tar.gz", f"/audit?before={HUGE}",
                 f"/rollouts/new?release_id={HUGE}", f"/stream/rollouts/{HUGE}"):
        status = requests.get(f"{stack.url}{path}", headers=cookie, timeout=10, allow_redirects=False).status_code
        assert status in (200, 400, 404), (path, status)
    for path in (f"/api/v1/rollouts/{HUGE}", f"/api/v1/results?page={HUGE}", f"/api/v1/results?per_page={HUGE}"):
        status = requests.get(f"{stack.url}{path}", headers=stack.bearer(), timeout=10).status_code
        assert status in (400, 404), (path, status)


def test_a_huge_release_id_in_json_is_a_400(stack: SecurityStack) -> None:
    response = requests.post(f"{stack.url}/api/v1/rollouts", headers=stack.bearer(admin=True), timeout=10,
                             json={"release_id": 10**30, "targets": "all"})
    assert response.status_code == 400


def test_a_100k_deep_json_body_is_a_400(stack: SecurityStack) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = requests.post(f"{stack.url}/api/v1/rollouts", timeout=10, data=body,
                             headers={**stack.bearer(admin=True), "Content-Type": "application/json"})
    assert response.status_code == 400


def test_next_with_cr_lf_is_a_400(stack: SecurityStack) -> None:
    response = requests.get(f"{stack.url}/login", params={"next": "/\r\nSet-Cookie: pwned=1"}, timeout=10)
    assert response.status_code == 400 and "pwned" not in response.headers.get("Set-Cookie", "")


def test_dashboard_state_is_private(stack: SecurityStack) -> None:
    database = stack.system.db_path
    files = [database, database.with_name("dashboard.db-wal"), database.with_name("dashboard.db-shm"),
             stack.root / "secret_key"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files if p.exists()}
    assert len(modes) == 4 and set(modes.values()) == {0o600}, modes
    packages = stack.root / "packages"
    assert stat.S_IMODE(packages.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in packages.rglob("*") if p.is_file())


def test_an_unsigned_upload_is_refused_before_unpacking(stack: SecurityStack) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("manifest.json", b"{}"), ("manifest.sig", b"AAAA")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("model/model.bin")
        info.size = BOMB_BYTES
        archive.addfile(info, io.BufferedReader(_Zeros(BOMB_BYTES)))
    start = time.monotonic()
    response = requests.post(f"{stack.url}/api/v1/releases", headers=stack.bearer(admin=True), timeout=60,
                             files={"package": ("bomb.tar.gz", buffer.getvalue())})
    assert response.status_code == 400
    assert time.monotonic() - start < 5.0, "the archive was unpacked before its signature was checked"
