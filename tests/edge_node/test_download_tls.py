"""Package downloads over HTTPS from a dashboard whose certificate the site's own CA signed (ota.ca_file)."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from broker_config.tls import TlsPaths, ensure_tls
from edge_node.ota.download import DownloadError, PackageDownloader

TOKEN = "node-token"
BODY = bytes(range(256)) * 400


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture
def tls(tmp_path: Path) -> TlsPaths:
    """A site CA and a server certificate for 127.0.0.1, made like the broker's."""
    return ensure_tls(tmp_path / "tls", hosts=("127.0.0.1", "localhost"))


@pytest.fixture
def https_origin(tls: TlsPaths) -> Iterator[str]:
    """A real HTTPS server with the site-signed certificate; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_download_trusts_the_sites_ca(tmp_path: Path, tls: TlsPaths, https_origin: str) -> None:
    downloader = PackageDownloader(tmp_path / "d", TOKEN, origin=https_origin, ca_file=str(tls.ca_cert))
    path = downloader.fetch(f"{https_origin}/packages/1/m.tar.gz", hashlib.sha256(BODY).hexdigest(), len(BODY))
    assert path.read_bytes() == BODY


def test_without_the_sites_ca_the_certificate_is_refused(tmp_path: Path, https_origin: str) -> None:
    downloader = PackageDownloader(tmp_path / "d", TOKEN, origin=https_origin, attempts=1)
    with pytest.raises(DownloadError):
        downloader.fetch(f"{https_origin}/packages/1/m.tar.gz", hashlib.sha256(BODY).hexdigest(), len(BODY))


def test_the_node_passes_ota_ca_file_to_its_downloader(tmp_path: Path, tls: TlsPaths, https_origin: str) -> None:
    from contracts.confs import Confs
    from edge_node.node import EdgeNode, Secrets, check_secrets
    from tests.edge_node.node_harness import ROOT

    raw = json.loads((ROOT / "confs.json").read_text())
    raw["ota"].update(ca_file=str(tls.ca_cert), trusted_public_keys=["ed25519:" + "A" * 43 + "="])
    raw["dashboard"]["public_url"] = https_origin
    raw["edge_node"].update(model_store=str(tmp_path / "models"), outbox_path=str(tmp_path / "outbox.db"),
                            inputs={"watch_dir": None, "http": False, "camera": None})
    confs = Confs.model_validate(raw)
    node = EdgeNode(confs, Secrets("pw", TOKEN))
    try:
        downloader = node.ota._downloader
        path = downloader.fetch(f"{https_origin}/packages/1/m.tar.gz", hashlib.sha256(BODY).hexdigest(), len(BODY))
        assert path.read_bytes() == BODY
    finally:
        node.outbox.close()
    raw["ota"]["ca_file"] = str(tmp_path / "missing.crt")
    assert any(p.startswith("ota.ca_file") for p in check_secrets(Confs.model_validate(raw), Secrets("pw", None)))
