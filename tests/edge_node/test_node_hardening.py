"""Node hardening on the real node process: package origin, command sender, private state, bounded HTTP."""

from __future__ import annotations

import http.client
import io
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from broker_harness import BrokerHandle, MessageCollector, broker_pool, free_port, publish_and_wait
from PIL import Image

from contracts.messages import CommandMessage, ModelUpdate, UpdateMessage, from_bytes, to_bytes
from edge_node.inference import ModelHolder
from edge_node.ota.download import UNREACHABLE
from edge_node.outbox import Outbox
from edge_node.sources import ClassificationPipeline
from edge_node.sources.http_api import MAX_CONCURRENT_REQUESTS, InferenceServer
from support.tiny_package import class_image
from tests.edge_node.node_harness import TOKEN, NodeProcess, wait_online, wait_until, write_confs
from tests.edge_node.ota_support import PackageServer

pytestmark = pytest.mark.timeout(120)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class TcpListener:
    """A port that accepts connections and records what arrives, speaking no protocol."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.received.append(conn.recv(65536))
            except OSError:
                self.received.append(b"")
            conn.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_package) -> Iterator[tuple[BrokerHandle, NodeProcess, PackageServer]]:
    root = tmp_path_factory.mktemp("hardened-node")
    (root / "state" / "outbox").mkdir(parents=True)
    (root / "state" / "outbox").chmod(0o755)  # left loose by an earlier install: the node must say so
    origin = PackageServer(token=TOKEN).start()
    with broker_pool(tmp_path_factory) as factory:
        broker = factory()
        confs = write_confs(
            root, broker, tiny_package.archive, tiny_package.public_key_text, public_url=origin.origin,
            outbox_path=str(root / "state" / "outbox" / "outbox.db"), model_store=str(root / "state" / "store" / "models"),
        )
        node = NodeProcess(confs, broker.credentials["devA"])
        watch = broker.collector("dashboard", broker.topic("devA", "Status"))
        node.start()
        try:
            wait_online(watch, broker.topic("devA", "Status"), node)
            yield broker, node, origin
        finally:
            node.kill()
            origin.stop()


@pytest.fixture
def watch(rig) -> MessageCollector:
    broker = rig[0]
    return broker.collector("dashboard", [broker.topic("devA", ch) for ch in ("Updates", "Warnings")])


def command(command_id: str, url: str, sender: str = "dashboard") -> CommandMessage:
    update = ModelUpdate(version="9.0.0", url=url, sha256="a" * 64, size=1000)
    return CommandMessage(device=sender, command_id=command_id, command=update)


def send(broker: BrokerHandle, message: CommandMessage) -> None:
    publish_and_wait(broker.client("dashboard"), broker.topic("devA", "Commands"), to_bytes(message))


def updates(watch: MessageCollector, command_id: str) -> list[UpdateMessage]:
    parsed = [from_bytes(m.payload) for m in list(watch.messages) if m.topic.endswith("/Updates")]
    return [u for u in parsed if isinstance(u, UpdateMessage) and u.command_id == command_id]


def failed_reason(watch: MessageCollector, command_id: str, node: NodeProcess) -> str:
    wait_until(lambda: any(u.state.value == "FAILED" for u in updates(watch, command_id)), 30, command_id, node)
    return [u for u in updates(watch, command_id) if u.state.value == "FAILED"][-1].reason or ""


def test_model_update_elsewhere_is_refused_before_any_connection_with_one_reason(rig, watch) -> None:
    broker, node, origin = rig
    open_port, foreign_http = TcpListener(), PackageServer(token=None).start()
    try:
        foreign_http.add("p.tgz", b"x" * 1000)
        closed = free_port()
        origin_port = origin.origin.rsplit(":", 1)[1]
        urls = {
            "open-port": f"http://127.0.0.1:{open_port.port}/p.tgz",
            "closed-port": f"http://127.0.0.1:{closed}/p.tgz",
            "foreign-http": foreign_http.url("p.tgz"),
            "other-scheme": f"https://127.0.0.1:{origin_port}/packages/p.tgz",
            "other-name": f"http://localhost:{origin_port}/packages/p.tgz",
            "origin-404": origin.url("missing.tgz"),
        }
        reasons = {}
        for name, url in urls.items():
            send(broker, command(f"c-{name}", url))
            reasons[name] = failed_reason(watch, f"c-{name}", node)
        time.sleep(0.5)
        assert open_port.received == [], "the node connected to a host that is not its dashboard"
        assert foreign_http.requests == [], "the node sent a request (and its token) to a foreign server"
        assert set(reasons.values()) == {f"download failed: {UNREACHABLE}"}, reasons
        assert all(r.path.endswith("/missing.tgz") and r.authorized for r in origin.requests)
    finally:
        open_port.sock.close()
        foreign_http.stop()


def test_commands_whose_envelope_names_another_sender_are_refused(rig, watch) -> None:
    broker, node, origin = rig
    send(broker, command("c-forged", origin.url("absent.tgz"), sender="devB"))
    wait_until(lambda: "refused command c-forged" in node.log(), 20, "the refusal in the log", node)
    warning = watch.wait_for(broker.topic("devA", "Warnings"), timeout=10, where=lambda m: b"c-forged" in m.payload)
    assert b"INPUT_REJECTED" in warning.payload
    send(broker, command("c-genuine", origin.url("absent.tgz")))
    assert failed_reason(watch, "c-genuine", node)
    assert updates(watch, "c-forged") == [], "the node acted on a forged command"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_directories_are_0700_and_files_0600_and_loose_ones_are_warned_about(rig) -> None:
    _, node, _ = rig
    edge = node.confs["edge_node"]
    outbox, store = Path(edge["outbox_path"]), Path(edge["model_store"])
    wait_until(lambda: outbox.with_name("outbox.db-wal").exists(), 10, "the outbox WAL", node)
    for directory in (store.parent, store, store.parent / "ota"):
        assert _mode(directory) == 0o700, directory
    for file in (outbox, outbox.with_name("outbox.db-wal"), outbox.with_name("outbox.db-shm")):
        assert _mode(file) == 0o600, file
    assert f"{outbox.parent} has mode 0755" in node.log()


def _multipart(parts: list[tuple[str, bytes, str]], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n".encode()
        + data + b"\r\n"
        for name, data, ctype in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(class_image("Pre", seed=5)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_multipart_with_a_file_is_still_classified(rig) -> None:
    _, node, _ = rig
    body, ctype = _multipart([("note", b"x", "text/plain"), ("file", _jpeg(), "image/jpeg")])
    answer = requests.post(node.http_url, data=body, headers={**AUTH, "Content-Type": ctype}, timeout=20)
    assert answer.status_code == 200, answer.text


def test_two_hundred_thousand_parts_are_refused_at_once(rig) -> None:
    _, node, _ = rig
    body, ctype = _multipart([("x", b"", "text/plain")] * 200_000 + [("file", _jpeg(), "image/jpeg")])
    started = time.monotonic()
    answer = requests.post(node.http_url, data=body, headers={**AUTH, "Content-Type": ctype}, timeout=60)
    assert answer.status_code == 400 and "parts" in answer.json()["Message"]
    assert time.monotonic() - started < 5


def test_deeply_nested_multipart_is_a_client_error(rig) -> None:
    _, node, _ = rig
    inner, ctype = _multipart([("file", _jpeg(), "image/jpeg")], boundary="b2000")
    for depth in range(1999, 0, -1):
        inner, ctype = _multipart([("file", inner, ctype)], boundary=f"b{depth}")
    started = time.monotonic()
    answer = requests.post(node.http_url, data=inner, headers={**AUTH, "Content-Type": ctype}, timeout=60)
    assert answer.status_code == 400, answer.text
    assert time.monotonic() - started < 5


def test_slow_uploads_with_the_token_do_not_lock_out_other_clients(rig) -> None:
    _, node, _ = rig
    port = node.confs["edge_node"]["http_port"]
    slow = []
    for _ in range(MAX_CONCURRENT_REQUESTS + 1):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(f"POST /Inference HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n0123456789".encode())
        slow.append(sock)
    try:
        time.sleep(0.5)
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=("127.0.0.2", 0))
        other.request("POST", "/Inference", body=_jpeg(), headers={**AUTH, "Content-Type": "image/jpeg"})
        response = other.getresponse()
        assert response.status == 200, response.read()
        other.close()
    finally:
        for sock in slow:
            sock.close()


def test_a_request_gets_a_total_time_limit_however_steadily_it_trickles(tmp_path: Path) -> None:
    # The request never completes, so no model is needed behind the real server.
    pipeline = ClassificationPipeline(ModelHolder(), Outbox(tmp_path / "o.db", 100), "devA", "H/Devices/L/devA/Sensors", 10**7)
    server = InferenceServer(pipeline, "127.0.0.1", 0, TOKEN, request_deadline_s=1.5)
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(f"POST /Inference HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode())
        started, answer = time.monotonic(), b""
        sock.setblocking(False)
        while time.monotonic() - started < 8 and not answer:
            try:
                sock.sendall(b"x" * 10)
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(0.2)
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                continue
        elapsed = time.monotonic() - started
        sock.close()
        assert answer.startswith(b"HTTP/1.0 408"), answer[:100]
        assert 1.0 < elapsed < 4.0
    finally:
        server.stop()
