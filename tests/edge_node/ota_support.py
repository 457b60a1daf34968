"""OTA test support: a real threaded HTTP package server with Range and fault injection, and packages."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import openvino as ov
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.messages import CommandMessage, ModelUpdate, Rollback
from contracts.model_package import InputSpec, Manifest, OutputSpec, SelfTestSpec, build_package
from support.tiny_package import CLASSES, INPUT_NAME, OUTPUT_NAME, build_tiny_model, class_image

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class Fault:
    """What a served file does wrong; applies to the first `times` requests (None: all)."""

    drop_at: int | None = None  # close the connection once the body reaches this absolute byte offset
    stall_at: int | None = None  # stop sending at this offset until `release` is set
    extra_bytes: int = 0  # send junk past the end of the file (without a Content-Length to give it away)
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    bad_content_range: bool = False  # answer 206 with a Content-Range for the wrong offset
    times: int | None = 1
    release: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class RequestRecord:
    """One request the server saw."""

    path: str
    range: str | None
    authorized: bool
    status: int
    body_bytes: int


class PackageServer:
    """Serves files by name at http://127.0.0.1:<port>/packages/<name>, requiring a bearer token."""

    def __init__(self, token: str | None = "test-token") -> None:
        self.token = token
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="package-server", daemon=True)

    def start(self) -> PackageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        for plan in self.faults.values():
            for fault in plan:
                fault.release.set()
        self._server.shutdown()
        self._server.server_close()

    def add(self, name: str, data: bytes | Path, *faults: Fault) -> str:
        """Serve data under name, the faults applying in turn to successive requests; returns its URL."""
        self.files[name] = Path(data).read_bytes() if isinstance(data, Path) else data
        self.faults[name] = list(faults)
        return self.url(name)

    @property
    def origin(self) -> str:
        """scheme://host:port of this server: the node's package origin (dashboard.public_url)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.origin}/packages/{name}"

    def body_bytes(self, name: str) -> int:
        """Body bytes sent for name over all requests."""
        with self._lock:
            return sum(r.body_bytes for r in self.requests if r.path.endswith("/" + name))

    def requests_for(self, name: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/" + name)]

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _take_fault(self, name: str) -> Fault | None:
        with self._lock:
            for fault in self.faults.get(name, []):
                if fault.times is None:
                    return fault
                if fault.times > 0:
                    fault.times -= 1
                    return fault
            return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                authorized = server.token is None or self.headers.get("Authorization") == f"Bearer {server.token}"
                name = self.path.rsplit("/", 1)[-1]
                range_header = self.headers.get("Range")
                if not authorized or name not in server.files:
                    status = 401 if not authorized else 404
                    self.send_error(status)
                    server._record(RequestRecord(self.path, range_header, authorized, status, 0))
                    return
                self._send(name, range_header, server._take_fault(name))

            def _send(self, name: str, range_header: str | None, fault: Fault | None) -> None:
                data = server.files[name]
                start = 0
                match = _RANGE.match(range_header or "")
                if match and not (fault and fault.ignore_range):
                    start = int(match[1])
                    if start >= len(data):
                        self.send_error(416)
                        server._record(RequestRecord(self.path, range_header, True, 416, 0))
                        return
                    self.send_response(206)
                    shown = start + 1 if fault and fault.bad_content_range else start
                    self.send_header("Content-Range", f"bytes {shown}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                extra = b"\0" * (fault.extra_bytes if fault else 0)
                body = data[start:] + extra
                if not extra:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                sent = self._write_body(body, start, fault)
                server._record(RequestRecord(self.path, range_header, True, 206 if start else 200, sent))

            def _write_body(self, body: bytes, start: int, fault: Fault | None) -> int:
                stop = len(body)
                if fault and fault.drop_at is not None:
                    stop = max(0, min(stop, fault.drop_at - start))
                if fault and fault.stall_at is not None:
                    stall = max(0, min(stop, fault.stall_at - start))
                    self.wfile.write(body[:stall])
                    self.wfile.flush()
                    fault.release.wait(30)
                    return stall
                try:
                    self.wfile.write(body[:stop])
                    self.wfile.flush()
                except OSError:
                    return 0
                return stop

        return Handler


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def update_command(
    command_id: str, version: str, url: str, data: bytes, *, sha256: str | None = None, size: int | None = None
) -> CommandMessage:
    """A model_update command for a served package."""
    update = ModelUpdate(version=version, url=url, sha256=sha256 or sha256_bytes(data), size=size or len(data))
    return CommandMessage(device="dashboard", command_id=command_id, command=update)


def rollback_command(command_id: str, version: str | None = None) -> CommandMessage:
    return CommandMessage(device="dashboard", command_id=command_id, command=Rollback(version=version))


def make_slow_package(
    out_dir: Path, private_key: Ed25519PrivateKey, version: str, *, pad_bytes: int, selftest_samples: int = 4
) -> Path:
    """A real tiny package made slow to install (a padding file) and to self-test (more samples)."""
    model = build_tiny_model(224, 0)
    labels = [CLASSES[i % len(CLASSES)] for i in range(selftest_samples)]
    inputs = np.stack([class_image(label, 224, seed=i) for i, label in enumerate(labels)])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = np.concatenate([compiled(image[None].astype(np.float32))[0] for image in inputs]).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="slow-pkg-") as tmp:
        work = Path(tmp)
        ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
        np.savez(work / "selftest.npz", inputs=inputs, outputs=outputs)
        (work / "padding.bin").write_bytes(np.random.default_rng(1).bytes(pad_bytes))
        manifest = Manifest(
            name="tiny-classifier",
            version=version,
            classes=list(CLASSES),
            input=InputSpec(name=INPUT_NAME, shape=[1, 224, 224, 3], layout="NHWC", dtype="float32"),
            output=OutputSpec(name=OUTPUT_NAME, shape=[1, len(CLASSES)]),
            selftest=SelfTestSpec(file="selftest.npz", atol=1e-3),
        )
        files = {name: work / name for name in ("model.xml", "model.bin", "selftest.npz", "padding.bin")}
        out_path = Path(out_dir) / f"slow-classifier-{version}.tar.gz"
        build_package(out_path, manifest, files, private_key)
    return out_path


def hostile_archive(out_path: Path, genuine: Path, kind: str) -> Path:
    """The genuine package's members plus one hostile member: 'traversal', 'absolute' or 'symlink'."""
    with tarfile.open(genuine, "r:gz") as source, tarfile.open(out_path, "w:gz") as archive:
        for member in source.getmembers():
            archive.addfile(member, source.extractfile(member))
        info = tarfile.TarInfo({"traversal": "../../evil.txt", "absolute": "/tmp/evil.txt", "symlink": "link"}[kind])
        if kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
        else:
            payload = b"owned"
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return out_path


@dataclass(frozen=True)
class OtaPackages:
    """Packages signed by a trusted key (v1.0.0, v1.1.0, v1.2.0), one with a broken self-test, one foreign."""

    key: Ed25519PrivateKey
    v1: Path
    v2: Path
    v3: Path
    broken_selftest: Path
    foreign_signature: Path

    @property
    def trusted(self) -> list:
        return [self.key.public_key()]


def build_ota_packages(root: Path) -> OtaPackages:
    """Build every package the OTA tests use (about a second in all)."""
    from support.tiny_package import make_tiny_package

    key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    return OtaPackages(
        key=key,
        v1=make_tiny_package(root / "v1", key, "1.0.0"),
        v2=make_tiny_package(root / "v2", key, "1.1.0", seed=1),
        v3=make_tiny_package(root / "v3", key, "1.2.0", seed=2),
        broken_selftest=make_tiny_package(root / "broken", key, "1.5.0", break_selftest=True),
        foreign_signature=make_tiny_package(root / "foreign", stranger, "1.6.0"),
    )
