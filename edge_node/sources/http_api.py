"""POST /Inference, compatible with the original classifier servers: raw image body or multipart `file`."""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from edge_node.sources.decode import MAX_IMAGE_BYTES, ImageRejected
from contracts.specimens import is_specimen_id
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.multipart import MultipartError, multipart_field, multipart_file
from edge_node.sources.pipeline import ClassificationPipeline, NoModelError

logger = logging.getLogger(__name__)

MAX_CONCURRENT_REQUESTS = 8
# Bodies are received before an inference slot is taken, so slow senders cannot starve the others; how
# many arrive at once is bounded in all and per peer, and a whole request (headers and body) gets at most
# REQUEST_DEADLINE_S however steadily its bytes trickle in.
MAX_RECEIVING = 32
MAX_RECEIVING_PER_PEER = 4
REQUEST_DEADLINE_S = 30.0


class RequestError(Exception):
    """A request answered with an error status and message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Receivers:
    """Counts connections receiving a body, in all and per peer address."""

    def __init__(self, total: int, per_peer: int) -> None:
        self._total, self._per_peer = total, per_peer
        self._by_peer: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, peer: str) -> bool:
        """Take a place for peer; False when it or everyone has too many."""
        with self._lock:
            if sum(self._by_peer.values()) >= self._total or self._by_peer[peer] >= self._per_peer:
                return False
            self._by_peer[peer] += 1
            return True

    def leave(self, peer: str) -> None:
        """Give peer's place back."""
        with self._lock:
            self._by_peer[peer] -= 1
            if self._by_peer[peer] <= 0:
                del self._by_peer[peer]


class InferenceServer:
    """A small threaded HTTP server; every request needs `Authorization: Bearer <token>`."""

    def __init__(
        self,
        pipeline: ClassificationPipeline,
        host: str,
        port: int,
        token: str,
        max_bytes: int = MAX_IMAGE_BYTES,
        request_deadline_s: float = REQUEST_DEADLINE_S,
        get_routes: GetRoutes | None = None,
    ) -> None:
        if not token:
            raise ValueError("the HTTP endpoint needs a bearer token")
        self._pipeline = pipeline
        self._token = token.encode()
        self._max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self._receivers = _Receivers(MAX_RECEIVING, MAX_RECEIVING_PER_PEER)
        self._deadline_s = request_deadline_s
        self._get_routes = get_routes
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-inference", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        logger.info("POST /Inference on port %d", self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def authorised(self, header: str | None) -> bool:
        """Constant-time check of a bearer Authorization header."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self._token)

    @staticmethod
    def specimen(query: str, form_value: bytes | None) -> str | None:
        """The specimen id from the query parameter or the form field `specimen_id` (they must agree)."""
        values = parse_qs(query, keep_blank_values=False).get("specimen_id", [])
        if form_value is not None:
            values.append(form_value.decode("utf-8", "replace").strip())
        chosen = set(values)
        if len(chosen) > 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, "specimen_id given twice with different values")
        specimen = chosen.pop() if chosen else None
        if specimen is not None and not is_specimen_id(specimen):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, "specimen_id must be an opaque id: letters, digits, '.', '_', '-', at most 64"
            )
        return specimen

    def infer(self, content_type: str, body: bytes, query: str = "") -> dict[str, Any]:
        """Classify a request body; the answer keeps the original servers' Response/Message/Diagnosis keys."""
        form_specimen = None
        if content_type.lower().startswith("multipart/form-data"):
            try:
                form_specimen = multipart_field(content_type, body, "specimen_id")
                body = multipart_file(content_type, body)
            except MultipartError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        specimen = self.specimen(query, form_specimen)
        try:
            outcome = self._pipeline.process_bytes(body, source="http", specimen_id=specimen)
        except ImageRejected as exc:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc)) from None
        except NoModelError as exc:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
        message, verdict = outcome.message, outcome.prediction.verdict
        ood = message.out_of_distribution
        return {
            "Response": "OK",
            "Message": verdict if ood else f"{message.label} detected" + (" (uncertain)" if message.uncertain else ""),
            "Diagnosis": "needs review" if ood else message.label,
            "verdict": verdict,
            "out_of_distribution": ood,
            "ood_score": message.ood_score,
            "sample_id": message.sample_id,
            "specimen_id": message.specimen_id,
            "label": message.label,
            "confidence": message.confidence,
            "probabilities": message.probabilities,
            "uncertain": message.uncertain,
            "model_version": message.model_version,
            "inference_ms": round(message.inference_ms, 3),
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 15
            server_version = "edge-node"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s " + format, self.address_string(), *args)

            def handle_one_request(self) -> None:
                # A watchdog ends reading at the deadline; writing the answer stays possible.
                self.expired = threading.Event()
                self.watchdog = threading.Timer(server._deadline_s, self._expire)
                self.watchdog.daemon = True
                self.watchdog.start()
                try:
                    super().handle_one_request()
                finally:
                    self.watchdog.cancel()

            def _expire(self) -> None:
                self.expired.set()
                try:
                    self.connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

            def do_POST(self) -> None:
                self._serve(lambda: self._post())

            def do_GET(self) -> None:
                if server._get_routes is None:
                    self._serve(lambda: self._not_allowed())
                    return
                answer = server._get_routes.answer(self.path, self.headers.get("Authorization"))
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def do_PUT(self) -> None:
                self._serve(lambda: self._not_allowed())

            do_DELETE = do_PATCH = do_PUT

            def _not_allowed(self) -> dict[str, Any]:
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "only POST /Inference is served")

            def _post(self) -> dict[str, Any]:
                if self.path.split("?", 1)[0] != "/Inference":
                    raise RequestError(HTTPStatus.NOT_FOUND, "only POST /Inference is served")
                if not server.authorised(self.headers.get("Authorization")):
                    raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
                length_text = self.headers.get("Content-Length")
                if length_text is None or not length_text.isdigit():
                    raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
                length = int(length_text)
                if length > server._max_bytes:
                    raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {server._max_bytes} bytes")
                body = self._receive(length)
                if not server._slots.acquire(blocking=False):
                    raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "busy: too many requests in progress")
                try:
                    query = self.path.split("?", 1)[1] if "?" in self.path else ""
                    return server.infer(self.headers.get("Content-Type", ""), body, query)
                finally:
                    server._slots.release()

            def _receive(self, length: int) -> bytes:
                peer = self.client_address[0]
                if not server._receivers.enter(peer):
                    raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "busy: too many uploads in progress")
                try:
                    body = self.rfile.read(length)
                except TimeoutError:
                    body = b""
                finally:
                    server._receivers.leave(peer)
                self.watchdog.cancel()
                if self.expired.is_set():
                    raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"request not received within {server._deadline_s:g} s")
                if len(body) != length:
                    raise RequestError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
                return body

            def _serve(self, action: Any) -> None:
                try:
                    answer, status = action(), HTTPStatus.OK
                except RequestError as exc:
                    answer, status = {"Response": "FAILED", "Message": str(exc)}, exc.status
                except Exception:
                    logger.exception("inference request failed")
                    answer = {"Response": "FAILED", "Message": "internal error"}
                    status = HTTPStatus.INTERNAL_SERVER_ERROR
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status == HTTPStatus.UNAUTHORIZED:
                    self.send_header("WWW-Authenticate", 'Bearer realm="edge-node"')
                if status != HTTPStatus.OK:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

        return Handler
