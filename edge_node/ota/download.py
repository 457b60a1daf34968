"""Resumable, bounded package download over HTTP(S) with the device's bearer token."""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from contracts import SOFTWARE_VERSION

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
# One reason for every URL refused and every connection or HTTP failure: a command's sender must not
# learn from FAILED reasons which hosts and ports are closed, open or speak HTTP. Details go to the log.
UNREACHABLE = "the dashboard did not provide the package"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
ProgressCallback = Callable[[int, int], None]


class DownloadError(RuntimeError):
    """A download that cannot complete; `retriable` says whether trying again may help."""

    def __init__(self, reason: str, *, retriable: bool = False) -> None:
        super().__init__(reason)
        self.retriable = retriable


class DownloadCancelled(DownloadError):
    """The agent is stopping."""


def url_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, with the default port filled in; None if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


@dataclass
class DownloadStats:
    """What one package download cost: bytes over the wire, requests, resumptions."""

    bytes_fetched: int = 0
    requests: int = 0
    resumed_from: list[int] | None = None


class PackageDownloader:
    """Fetches one package into `<downloads>/<sha256>.part`, resuming with Range after an interruption."""

    def __init__(
        self,
        downloads_dir: Path,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        ca_file: str | None = None,
        origin: str | None = None,
    ) -> None:
        """origin: the only scheme://host:port packages come from (and the token goes to); None allows any."""
        self.origin = url_origin(origin) if origin is not None else None
        if origin is not None and self.origin is None:
            raise ValueError(f"package origin {origin!r} is not an http(s) URL")
        self.downloads_dir = Path(downloads_dir)
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        self._token = token
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None

    def check_url(self, url: str) -> None:
        """Refuse, before any connection, a URL outside the package origin."""
        origin = url_origin(url)
        if origin is None or (self.origin is not None and origin != self.origin):
            logger.warning("refusing package URL %r: packages come only from %s", url[:200], self.origin)
            raise DownloadError(UNREACHABLE)

    def partial_path(self, sha256: str) -> Path:
        """Where the bytes of a package with this hash accumulate."""
        return self.downloads_dir / f"{sha256}.part"

    def fetch(
        self,
        url: str,
        sha256: str,
        size: int,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        stats: DownloadStats | None = None,
    ) -> Path:
        """Download until the file has exactly size bytes hashing to sha256; returns its path."""
        self.check_url(url)
        stats = stats if stats is not None else DownloadStats()
        stats.resumed_from = stats.resumed_from if stats.resumed_from is not None else []
        cancel = cancel or threading.Event()
        path = self.partial_path(sha256)
        fresh_retry_done = False
        attempt = 0
        while True:
            attempt += 1
            try:
                self._fetch_once(url, path, size, progress, cancel, stats)
            except DownloadError as exc:
                if isinstance(exc, DownloadCancelled) or not exc.retriable or attempt >= self._attempts:
                    raise
                logger.warning("download of %s interrupted (%s); resuming, attempt %d", url, exc, attempt + 1)
                if cancel.wait(self._backoff_s * attempt):
                    raise DownloadCancelled("the update was cancelled") from None
                continue
            actual = _sha256_of(path)
            if actual == sha256:
                return path
            path.unlink(missing_ok=True)
            if stats.resumed_from and not fresh_retry_done and attempt < self._attempts:
                # A partial file from an earlier attempt may have been corrupt: fetch once more from zero.
                fresh_retry_done = True
                stats.resumed_from.clear()
                continue
            raise DownloadError(f"sha256 of the download is {actual}, the command said {sha256}")

    def _fetch_once(
        self,
        url: str,
        path: Path,
        size: int,
        progress: ProgressCallback | None,
        cancel: threading.Event,
        stats: DownloadStats,
    ) -> None:
        """One HTTP request: fetch the missing tail of path (or all of it)."""
        offset = path.stat().st_size if path.exists() else 0
        if offset > size:
            path.unlink()
            offset = 0
        if offset == size:
            return
        connection, target = self._connect(url)
        headers = {"User-Agent": f"all-edge-node/{SOFTWARE_VERSION}", "Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            stats.requests += 1
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            offset = self._check_response(response, offset, size, path)
            if offset and stats.resumed_from is not None:
                stats.resumed_from.append(offset)
            self._copy_body(response, path, offset, size, progress, cancel, stats)
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("download from %s failed: %s", url[:200], exc or type(exc).__name__)
            raise DownloadError(UNREACHABLE, retriable=True) from None
        finally:
            connection.close()

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        self.check_url(url)
        parts = urlsplit(url)
        scheme, host, port = url_origin(url) or ("", "", 0)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if scheme == "https":
            if self._ssl is None:
                # Made on first use: loading the CA store costs milliseconds and a few hundred kB per node, and most
                # nodes (hundreds per simulator process) never download over HTTPS.
                self._ssl = ssl.create_default_context(cafile=self._ca_file)
            return http.client.HTTPSConnection(host, port, timeout=self._timeout_s, context=self._ssl), target
        return http.client.HTTPConnection(host, port, timeout=self._timeout_s), target

    @staticmethod
    def _check_response(response: http.client.HTTPResponse, offset: int, size: int, path: Path) -> int:
        """Validate status and ranges; returns the offset the body starts at."""
        status = response.status
        if status == 206:
            match = _CONTENT_RANGE.match(response.getheader("Content-Range", "") or "")
            if not match:
                raise DownloadError(f"partial response without a valid Content-Range: {response.getheader('Content-Range')!r}")
            start, end, total = int(match[1]), int(match[2]), match[3]
            if start != offset or end != size - 1 or (total != "*" and int(total) != size):
                raise DownloadError(f"server sent range {start}-{end}/{total}, asked for {offset}-{size - 1}/{size}")
            return offset
        if status == 200:
            if offset:
                logger.info("server ignored the Range request; downloading from the start")
                path.unlink(missing_ok=True)
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) != size:
                raise DownloadError(f"server announces {length} bytes, the command said {size}")
            return 0
        if status == 416:
            path.unlink(missing_ok=True)
            raise DownloadError("server refused the resume range; restarting", retriable=True)
        # Redirects are not followed: the token stays with its origin.
        logger.warning("package server answered HTTP %d %s", status, response.reason)
        raise DownloadError(UNREACHABLE, retriable=status >= 500 or status == 429)

    @staticmethod
    def _copy_body(
        response: http.client.HTTPResponse,
        path: Path,
        offset: int,
        size: int,
        progress: ProgressCallback | None,
        cancel: threading.Event,
        stats: DownloadStats,
    ) -> None:
        """Append the body to path, never past size bytes in all."""
        done = offset
        with open(path, "ab" if offset else "wb") as out:
            while done < size:
                if cancel.is_set():
                    raise DownloadCancelled("the update was cancelled")
                # read1 returns what has arrived, so bytes received before a stall are kept for the resume.
                chunk = response.read1(min(CHUNK_BYTES, size - done))
                if not chunk:
                    raise DownloadError(f"connection closed after {done} of {size} bytes", retriable=True)
                out.write(chunk)
                done += len(chunk)
                stats.bytes_fetched += len(chunk)
                if progress is not None:
                    progress(done, size)
            out.flush()
        if response.read(1):
            path.unlink(missing_ok=True)
            raise DownloadError(f"server sent more than the {size} bytes the command announced")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ProgressThrottle:
    """Calls report(fraction) at most once per interval, so a slow download shows progress without flooding."""

    def __init__(self, report: Callable[[float], None], interval_s: float = 2.0) -> None:
        self._report = report
        self._interval_s = interval_s
        self._last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval_s and done < total:
            self._last = now
            self._report(done / total)
