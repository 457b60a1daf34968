"""The dashboard over HTTP from the host: the sign-in form and pages as a browser sees them, and the JSON API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class DashboardError(RuntimeError):
    """The dashboard answered something other than what a working one answers."""


class Dashboard:
    """One signed-in browser session and one API token against a dashboard URL."""

    def __init__(self, base_url: str, api_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_token = api_token
        self.http = requests.Session()
        self.cookies: dict[str, str] = {}

    def _page(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A browser request; cookies go back by hand because the session cookie is `Secure` and this is plain HTTP."""
        header = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = self.http.request(method, self.base_url + path, headers={"Cookie": header} if header else {},
                                     allow_redirects=False, timeout=30, **kwargs)
        self.cookies.update({cookie.name: cookie.value or "" for cookie in response.cookies})
        self.http.cookies.clear()
        return response

    def login(self, username: str, password: str) -> None:
        """Sign in through the /login form (CSRF token included), as a person would."""
        form = self._page("GET", "/login")
        token = CSRF.search(form.text)
        if form.status_code != 200 or token is None:
            raise DashboardError(f"GET /login answered {form.status_code} without a sign-in form")
        answer = self._page("POST", "/login", data={"username": username, "password": password,
                                                    "csrf_token": token.group(1)})
        if answer.status_code != 302:
            raise DashboardError(f"signing in answered {answer.status_code}, not a redirect")

    def page(self, path: str) -> str:
        """The HTML of a page for the signed-in user."""
        response = self._page("GET", path)
        if response.status_code != 200:
            raise DashboardError(f"GET {path} answered {response.status_code}")
        return response.text

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON API call with the bearer token; the decoded answer."""
        response = requests.request(method, f"{self.base_url}/api/v1{path}", timeout=60,
                                    headers={"Authorization": f"Bearer {self.api_token}"}, **kwargs)
        if response.status_code >= 400:
            raise DashboardError(f"{method} /api/v1{path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def results(self) -> list[dict[str, Any]]:
        """Every stored result (all pages)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.api("GET", "/results", params={"page": page, "per_page": 500})
            found += answer["results"]
            if not answer["has_next"]:
                return found
            page += 1

    def upload_release(self, package: Path) -> dict[str, Any]:
        """Upload a signed package; the registered release."""
        with package.open("rb") as handle:
            return dict(self.api("POST", "/releases", files={"package": (package.name, handle, "application/gzip")}))
