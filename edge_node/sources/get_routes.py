"""The node's GET routes: a kept image for the dashboard's account only, and Prometheus metrics."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

from edge_node.images import SHA256, ImageStore

IMAGE_PREFIX = "/Images/"
_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"BM", "image/bmp"), (b"RIFF", "image/webp"),
          (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of a GET."""

    status: HTTPStatus
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: HTTPStatus, message: str) -> Answer:
    body = json.dumps({"Response": "FAILED", "Message": message}).encode()
    headers = {"Content-Type": "application/json"}
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="edge-node"'
    return Answer(status, body, headers)


def _matches(header: str | None, token: bytes | None) -> bool:
    """Constant-time check of a bearer header against one token."""
    if token is None or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token)


def image_type(data: bytes) -> str:
    """A content type from the image's first bytes."""
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), "application/octet-stream")


class GetRoutes:
    """Answers GET /Images/<sha256> (dashboard token only) and GET /metrics (metrics token only)."""

    def __init__(
        self,
        images: ImageStore | None,
        images_token: str | None,
        metrics: Callable[[], tuple[bytes, str]] | None,
        metrics_token: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._images = images
        self._images_token = images_token.encode() if images_token else None
        self._metrics = metrics
        self._metrics_token = metrics_token.encode() if metrics_token else None
        self._clock = clock

    def answer(self, path: str, authorization: str | None) -> Answer:
        """The answer to one GET; each route accepts only its own token, never the inference token."""
        route = path.split("?", 1)[0]
        if route == "/metrics" and self._metrics is not None and self._metrics_token is not None:
            if not _matches(authorization, self._metrics_token):
                return _json(HTTPStatus.UNAUTHORIZED, "missing or wrong metrics bearer token")
            body, content_type = self._metrics()
            return Answer(HTTPStatus.OK, body, {"Content-Type": content_type, "Cache-Control": "no-store"})
        if route.startswith(IMAGE_PREFIX) and self._images is not None and self._images_token is not None:
            if not _matches(authorization, self._images_token):
                return _json(HTTPStatus.UNAUTHORIZED, "images are served to the dashboard's account only")
            return self._image(route[len(IMAGE_PREFIX):])
        return _json(HTTPStatus.METHOD_NOT_ALLOWED, "only POST /Inference is served")

    def _image(self, sha256: str) -> Answer:
        if not SHA256.match(sha256):
            return _json(HTTPStatus.NOT_FOUND, "no such image")
        assert self._images is not None
        found = self._images.get(sha256)
        if found is None:
            return _json(HTTPStatus.NOT_FOUND, "no such image, or past its retention period")
        data, expires = found
        remaining = max(0, int(expires - self._clock()))
        return Answer(HTTPStatus.OK, data, {
            "Content-Type": image_type(data), "Cache-Control": f"private, max-age={remaining}",
            "Expires": formatdate(expires, usegmt=True), "X-Retained-Until": str(int(expires)),
        })
