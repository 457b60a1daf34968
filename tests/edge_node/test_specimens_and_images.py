"""Specimen ids through every input path, images kept for review (dashboard token only, retention), node metrics."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from contracts.messages import SensorsMessage, from_bytes
from edge_node.images import ImageStore
from edge_node.inference import ModelHolder
from edge_node.inference.openvino_runtime import OpenVinoClassifier
from edge_node.metrics import NodeMetrics
from edge_node.outbox import Outbox
from edge_node.sources import ClassificationPipeline
from edge_node.sources.folder import FolderSource
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.http_api import InferenceServer
from support.tiny_package import class_image
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
TOKEN, IMAGE_TOKEN, METRICS_TOKEN = "infer-token", "dashboard-image-token", "metrics-token"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edge_node", *args], capture_output=True, text=True, env=env, timeout=90)


def confs_file(tmp_path: Path, public_key: str) -> Path:
    data = json.loads((ROOT / "confs.json").read_text())
    data["ota"]["trusted_public_keys"] = [public_key]
    data["edge_node"].update(model_store=str(tmp_path / "models"), initial_package=None)
    path = tmp_path / "confs.json"
    path.write_text(json.dumps(data))
    return path


def save_jpeg(path: Path, rgb: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=95)  # type: ignore[arg-type]
    return path


class Clock:
    """A settable clock for retention."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def png(label: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(class_image(label, size=64, seed=seed)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def images(tmp_path: Path, clock: Clock) -> ImageStore:
    return ImageStore(tmp_path / "images", retention_s=3600, clock=clock)


@pytest.fixture
def metrics() -> NodeMetrics:
    return NodeMetrics("devA", lambda: 3, lambda: True)


@pytest.fixture
def pipeline(tiny_package, tmp_path: Path, images: ImageStore, metrics: NodeMetrics) -> ClassificationPipeline:
    holder = ModelHolder(OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest))
    return ClassificationPipeline(
        holder, Outbox(tmp_path / "o.db", 1000), "devA", "H/Devices/L/devA/Sensors", 25_000_000,
        on_result=metrics.on_prediction, images=images,
    )


def stored(pipeline: ClassificationPipeline) -> list[SensorsMessage]:
    return [from_bytes(i.payload) for i in pipeline._outbox.pending(limit=1000)]  # type: ignore[misc]


@pytest.fixture
def server(pipeline: ClassificationPipeline, images: ImageStore, metrics: NodeMetrics, clock: Clock):
    routes = GetRoutes(images, IMAGE_TOKEN, metrics.exposition, METRICS_TOKEN, clock=clock)
    srv = InferenceServer(pipeline, "127.0.0.1", 0, TOKEN, get_routes=routes)
    srv.start()
    yield srv
    srv.stop()


def call(url: str, token: str | None, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=data, headers={**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "specimenboundary"
    body = b""
    for name, value in fields.items():
        filename = '; filename="x.png"' if name == "file" else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_specimen_id_from_query_parameter_and_form_field(server, pipeline):
    base = f"http://127.0.0.1:{server.port}/Inference"
    status, body, _ = call(base + "?specimen_id=SP-0001", TOKEN, png("Pre"), {"Content-Type": "image/png"})
    assert status == 200 and json.loads(body)["specimen_id"] == "SP-0001"
    form, content_type = multipart({"specimen_id": b"SP-0002", "file": png("Pro", 1)})
    status, body, _ = call(base, TOKEN, form, {"Content-Type": content_type})
    assert status == 200 and json.loads(body)["specimen_id"] == "SP-0002"
    status, body, _ = call(base, TOKEN, png("Early", 2), {"Content-Type": "image/png"})
    assert status == 200 and json.loads(body)["specimen_id"] is None
    assert [m.specimen_id for m in stored(pipeline)] == ["SP-0001", "SP-0002", None]


@pytest.mark.parametrize("query", ["?specimen_id=Jane%20Doe", "?specimen_id=" + "x" * 65, "?specimen_id=a&specimen_id=b"])
def test_bad_specimen_ids_are_refused_before_classifying(server, pipeline, query):
    status, body, _ = call(f"http://127.0.0.1:{server.port}/Inference{query}", TOKEN, png("Pre"), {"Content-Type": "image/png"})
    assert status == 400 and b"specimen_id" in body
    assert stored(pipeline) == []


def test_watched_folder_takes_the_specimen_from_the_sub_folder(pipeline, tmp_path: Path):
    inbox = tmp_path / "inbox"
    (inbox / "SP-7").mkdir(parents=True)
    (inbox / "SP-7" / "field-1.png").write_bytes(png("Pre"))
    (inbox / "loose.png").write_bytes(png("Pro", 1))
    (inbox / "bad name!").mkdir()
    (inbox / "bad name!" / "f.png").write_bytes(png("Pre", 2))
    source = FolderSource(inbox, pipeline, rescan_s=0.2, settle_s=0.0)
    source.start()
    try:
        (inbox / "SP-7" / "field-2.png").write_bytes(png("Early", 3))
        wait_until(lambda: len(stored(pipeline)) == 3 and source.failed == 1, timeout=20, what="three fields and one refusal")
    finally:
        source.stop()
    assert sorted(m.specimen_id or "-" for m in stored(pipeline)) == ["-", "SP-7", "SP-7"]
    assert sorted(p.name for p in (inbox / "done" / "SP-7").iterdir()) == ["field-1.png", "field-2.png"]
    assert (inbox / "done" / "loose.png").exists()
    assert "opaque id" in next((inbox / "failed").glob("*.reason.txt")).read_text()


def test_classify_cli_specimen_flag_prints_the_specimen_verdict(tmp_path, tiny_package):
    path = confs_file(tmp_path, tiny_package.public_key_text)
    data = tmp_path / "smear"
    for i in range(3):
        save_jpeg(data / f"f{i}.jpg", class_image("Pre", seed=i))
    result = run_cli("classify", "--confs", str(path), "--package", str(tiny_package.archive), "--json",
                     "--specimen", "SP-CLI-1", str(data))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(line["specimen_id"] == "SP-CLI-1" for line in lines[:-1])
    summary = lines[-1]
    assert summary["specimen_id"] == "SP-CLI-1" and summary["specimen"]["fields"] == 3
    assert summary["specimen"]["verdict"] == "insufficient"  # 3 fields < min_usable_fields (5)
    refused = run_cli("classify", "--confs", str(path), "--package", str(tiny_package.archive), "--specimen", "Doe, J", str(data))
    assert refused.returncode == 1 and "opaque id" in refused.stderr


def test_images_are_served_only_to_the_dashboard_token_and_only_within_retention(server, clock):
    data = png("Pre", 9)
    sha = hashlib.sha256(data).hexdigest()
    assert call(f"http://127.0.0.1:{server.port}/Inference", TOKEN, data, {"Content-Type": "image/png"})[0] == 200
    url = f"http://127.0.0.1:{server.port}/Images/{sha}"
    status, body, headers = call(url, IMAGE_TOKEN)
    assert status == 200 and body == data and headers["Content-Type"] == "image/png"
    assert float(headers["X-Retained-Until"]) > clock.now
    assert call(url, TOKEN)[0] == 401  # the inference token is not the dashboard's account
    assert call(url, None)[0] == 401
    assert call(url, METRICS_TOKEN)[0] == 401
    assert call(f"http://127.0.0.1:{server.port}/Images/{'0' * 64}", IMAGE_TOKEN)[0] == 404
    clock.now += 3601
    assert call(url, IMAGE_TOKEN)[0] == 404


def test_retention_purges_old_images(images: ImageStore, clock: Clock):
    images.put("a" * 64, b"old")
    clock.now += 4000
    images.put("b" * 64, b"new")
    images.purge()
    assert images.get("a" * 64) is None and images.get("b" * 64) is not None
    assert not list(images.folder.glob("aa/*"))


def test_node_metrics_need_their_token_and_count_results(server):
    base = f"http://127.0.0.1:{server.port}"
    call(base + "/Inference", TOKEN, png("Pre"), {"Content-Type": "image/png"})
    assert call(base + "/metrics", None)[0] == 401 and call(base + "/metrics", TOKEN)[0] == 401
    status, body, _ = call(base + "/metrics", METRICS_TOKEN)
    text = body.decode()
    assert status == 200
    for name in ("edge_inference_seconds_bucket", "edge_results_total", "edge_uncertain_results_total",
                 "edge_ood_results_total", 'edge_outbox_depth{device="devA"} 3.0', 'edge_selftest_passed{device="devA"} 1.0'):
        assert name in text
