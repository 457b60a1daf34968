"""Hostile-input guards shared by the web app and the API: bounded integers, bounded JSON nesting."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, RequestTimeout
from werkzeug.routing import IntegerConverter

# A request body must have arrived this long after the request began (uploads of large packages included).
BODY_DEADLINE_S = 300.0

# Every integer the database stores is a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT at most).
MAX_ID = 2**63 - 1


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` route parts that fit a database integer; larger ones do not match (404, not a 500)."""

    def __init__(self, map: Any, fixed_digits: int = 0, min: int | None = None, max: int | None = None,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=MAX_ID if max is None else max, signed=signed)


class SafeJSONProvider(DefaultJSONProvider):
    """JSON bodies nested too deeply to parse are a ValueError (so a 400), never a RecursionError (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return json.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON is nested too deeply") from None


def db_int(value: Any, minimum: int = 0) -> int | None:
    """value as an int within [minimum, MAX_ID], else None (query strings, headers and JSON fields alike)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 20 or not text.lstrip("-").isdigit():
            return None
        value = int(text)
    if not isinstance(value, int) or not minimum <= value <= MAX_ID:
        return None
    return value


def _overflow(_: OverflowError) -> tuple[Response, int] | BadRequest:
    """Last line of defence: a number too large for the database that slipped past the checks is a 400."""
    if request.blueprint == "api":
        return jsonify(error="bad_request", message="a number is out of range"), 400
    return BadRequest("a number is out of range")


class _DeadlineInput:
    """wsgi.input that refuses to go on reading once the request's deadline has passed (a 408)."""

    def __init__(self, stream: Any, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _check(self) -> None:
        if time.monotonic() > self._deadline:
            raise RequestTimeout("the request body took too long to arrive")

    def read(self, *args: Any) -> bytes:
        self._check()
        return self._stream.read(*args)  # type: ignore[no-any-return]

    def readline(self, *args: Any) -> bytes:
        self._check()
        return self._stream.readline(*args)  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class BodyDeadline:
    """WSGI middleware: the whole body must arrive within seconds, however slowly each byte trickles in."""

    def __init__(self, app: Callable[..., Iterable[bytes]], seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], time.monotonic() + self.seconds)
        return self.app(environ, start_response)


def install(app: Flask) -> None:
    """Bounded `<int:>` converter (call before routes are registered), safe JSON, overflow as 400, body deadline."""
    app.wsgi_app = BodyDeadline(app.wsgi_app, float(app.config.get("BODY_DEADLINE_S", BODY_DEADLINE_S)))  # type: ignore[method-assign]
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = SafeJSONProvider(app)
    app.register_error_handler(OverflowError, _overflow)
