"""Hostile-input guards shared by the web app and the API: bounded integers, bounded JSON nesting."""
from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

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


def install(app: Flask) -> None:
    """Bounded `<int:>` converter (call before routes are registered), safe JSON parsing, overflow as 400."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = SafeJSONProvider(app)
    app.register_error_handler(OverflowError, _overflow)
