"""Images fetched from the nodes for review: on request only, cached no longer than the node keeps them."""

from __future__ import annotations

import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from contracts.confs import read_secret
from contracts.lab_confs import ReviewConfs

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_CACHED = 64


class ImageUnavailable(Exception):
    """The node cannot give the image (not configured, unreachable, past retention); the message says which."""


@dataclass(frozen=True)
class FetchedImage:
    """Image bytes, their content type and when the node stops keeping them (epoch seconds)."""

    data: bytes
    content_type: str
    expires_at: float


class NodeImages:
    """Fetches `GET {node_url}/Images/<sha256>` with the dashboard's own token and caches the answers briefly."""

    def __init__(
        self, confs: ReviewConfs, token: str | None, timeout_s: float = 10.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._urls = {k: v.rstrip("/") for k, v in confs.node_urls.items()}
        self._token = token
        self._cache_s = confs.cache_s
        self._timeout = timeout_s
        self._clock = clock
        self._context = ssl.create_default_context(cafile=confs.ca_file) if confs.ca_file else None
        self._cache: OrderedDict[tuple[str, str], FetchedImage] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_confs(cls, confs: ReviewConfs) -> "NodeImages":
        """With the token from REVIEW_IMAGE_TOKEN or review.image_token_file."""
        return cls(confs, read_secret("REVIEW_IMAGE_TOKEN", confs.image_token_file))

    def _cached(self, key: tuple[str, str]) -> FetchedImage | None:
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                return None
            if found.expires_at <= self._clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return found

    def purge(self) -> None:
        """Drop every cached image past its expiry."""
        now = self._clock()
        with self._lock:
            for key in [k for k, v in self._cache.items() if v.expires_at <= now]:
                del self._cache[key]

    def fetch(self, device_id: str, sha256: str) -> FetchedImage:
        """The image of a result, from the cache or the node; raises ImageUnavailable."""
        if not SHA256.match(sha256):
            raise ImageUnavailable("not an image hash")
        key = (device_id, sha256)
        if (found := self._cached(key)) is not None:
            return found
        base = self._urls.get(device_id)
        if base is None or not self._token:
            raise ImageUnavailable(f"no image endpoint is configured for {device_id} (dashboard.review.node_urls)")
        request = urllib.request.Request(
            f"{base}/Images/{sha256}", headers={"Authorization": f"Bearer {self._token}", "User-Agent": "all-fleet-dashboard"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:  # noqa: S310
                data = response.read(MAX_IMAGE_BYTES + 1)
                content_type = response.headers.get("Content-Type", "application/octet-stream")
                retained = response.headers.get("X-Retained-Until")
        except urllib.error.HTTPError as exc:
            raise ImageUnavailable(
                "the node no longer keeps this image" if exc.code == 404 else f"the node answered {exc.code}"
            ) from None
        except (OSError, ValueError) as exc:
            raise ImageUnavailable(f"the node could not be reached: {exc}") from None
        if len(data) > MAX_IMAGE_BYTES or not content_type.startswith("image/"):
            raise ImageUnavailable("the node's answer is not an image")
        now = self._clock()
        node_expiry = float(retained) if retained and retained.replace(".", "", 1).isdigit() else now
        image = FetchedImage(data, content_type, min(node_expiry, now + self._cache_s))
        if image.expires_at > now:
            with self._lock:
                self._cache[key] = image
                while len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
        return image
