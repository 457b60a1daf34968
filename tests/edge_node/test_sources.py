"""Sources without a broker: safe decoding, the video-file camera source, folder details."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from contracts.messages import SensorsMessage, from_bytes
from edge_node.inference import ModelHolder
from edge_node.inference.openvino_runtime import OpenVinoClassifier
from edge_node.outbox import Outbox
from edge_node.sources import ClassificationPipeline, ImageRejected, NoModelError, decode_image
from edge_node.sources.camera import CameraSource
from edge_node.sources.folder import FolderSource
from support.tiny_package import class_image

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pipeline(tiny_package, tmp_path: Path) -> ClassificationPipeline:
    holder = ModelHolder(OpenVinoClassifier(tiny_package.unpacked, tiny_package.manifest))
    return ClassificationPipeline(holder, Outbox(tmp_path / "o.db", 1000), "devA", "H/Devices/L/devA/Sensors", 25_000_000)


def stored(pipeline: ClassificationPipeline) -> list[SensorsMessage]:
    items = pipeline._outbox.pending(limit=1000)
    return [from_bytes(i.payload) for i in items]  # type: ignore[misc]


def test_decode_reads_png_and_jpeg_as_rgb():
    rgb = class_image("Pre", size=40)
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, fmt)
        decoded = decode_image(buffer.getvalue(), 10_000)
        assert decoded.shape == (40, 40, 3) and decoded.dtype == np.uint8
        # Channel means prove RGB (not BGR) order; JPEG is lossy on noise pixel by pixel.
        np.testing.assert_allclose(decoded.mean(axis=(0, 1)), rgb.mean(axis=(0, 1)), atol=3)
        if fmt == "PNG":
            assert np.array_equal(decoded, rgb)


def test_decode_checks_pixels_before_decoding():
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100)).save(buffer, "PNG")
    with pytest.raises(ImageRejected, match="200x100"):
        decode_image(buffer.getvalue(), max_pixels=19_999)
    assert decode_image(buffer.getvalue(), max_pixels=20_000).shape == (100, 200, 3)


def test_decode_refuses_a_png_bomb_header():
    buffer = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(buffer, "PNG")  # a few KB that would decode to 900 megapixels
    with pytest.raises(ImageRejected, match="megapixels|decompression bomb"):
        decode_image(buffer.getvalue(), max_pixels=25_000_000)


def test_decode_refuses_oversized_bytes_and_gif():
    with pytest.raises(ImageRejected, match="over the limit"):
        decode_image(b"\xff" * 2000, max_pixels=100, max_bytes=1000)
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, "GIF")
    with pytest.raises(ImageRejected, match="GIF"):
        decode_image(buffer.getvalue(), max_pixels=1000)


def test_video_file_is_classified_one_frame_per_interval(pipeline, tmp_path: Path):
    video = tmp_path / "stream.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (224, 224))
    assert writer.isOpened()
    for label in ("Pre",) * 10 + ("Pro",) * 10:
        writer.write(cv2.cvtColor(class_image(label, seed=1), cv2.COLOR_RGB2BGR))
    writer.release()
    camera = CameraSource(str(video), pipeline, interval_s=0.5)
    camera.start()
    assert camera.finished.wait(30)
    camera.stop()
    labels = [m.label for m in stored(pipeline)]
    assert labels == ["Pre", "Pre", "Pro", "Pro"]
    assert camera.frames_classified == 4


def test_unopenable_camera_retries_without_crashing(pipeline, tmp_path: Path):
    camera = CameraSource(str(tmp_path / "missing.avi"), pipeline, interval_s=0.1, reopen_delay_s=0.05)
    camera.start()
    camera.stop()
    assert camera.frames_classified == 0 and not camera.finished.is_set()


def test_no_model_raises_no_model_error(tmp_path: Path):
    pipeline = ClassificationPipeline(ModelHolder(), Outbox(tmp_path / "o.db", 10), "devA", "t", 1000)
    with pytest.raises(NoModelError):
        pipeline.process_pixels(class_image("Pre", size=10))


def test_folder_refuses_symlinks_and_skips_partial_names(pipeline, tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.jpg"
    Image.fromarray(class_image("Pre")).save(secret, "JPEG")
    os.symlink(secret, inbox / "link.jpg")
    (inbox / "upload.jpg.part").write_bytes(b"partial")
    (inbox / ".hidden.jpg").write_bytes(b"hidden")
    Image.fromarray(class_image("Benign")).save(inbox / "ok.jpg", "JPEG")
    source = FolderSource(inbox, pipeline)
    source.start()
    try:
        deadline = time.monotonic() + 10
        while not ((inbox / "done" / "ok.jpg").exists() and (inbox / "failed" / "link.jpg.reason.txt").exists()):
            assert time.monotonic() < deadline, "folder did not process its files"
            time.sleep(0.02)
    finally:
        source.stop()
    assert "not a regular file" in (inbox / "failed" / "link.jpg.reason.txt").read_text()
    assert secret.exists() and (inbox / "upload.jpg.part").exists() and (inbox / ".hidden.jpg").exists()
    assert [m.label for m in stored(pipeline)] == ["Benign"]


def test_folder_keeps_same_named_files_apart(pipeline, tmp_path: Path):
    inbox = tmp_path / "inbox"
    source = FolderSource(inbox, pipeline)
    source.start()
    try:
        for seed in range(2):
            Image.fromarray(class_image("Early", seed=seed)).save(inbox / "same.jpg", "JPEG")
            deadline = time.monotonic() + 10
            while len(list((inbox / "done").iterdir())) < seed + 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        source.stop()
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["same.1.jpg", "same.jpg"]


def test_http_refuses_oversized_and_unsized_bodies_before_reading_them(pipeline):
    import http.client

    from edge_node.sources.http_api import InferenceServer

    server = InferenceServer(pipeline, "127.0.0.1", 0, "tok", max_bytes=1000)
    server.start()
    try:
        auth = {"Authorization": "Bearer tok"}
        for headers, status in (
            ({**auth, "Content-Length": "5000"}, 413),
            (auth, 411),
            ({"Authorization": "Basic dG9rOg==", "Content-Length": "3"}, 401),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.putrequest("POST", "/Inference")
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            answer = conn.getresponse()
            assert answer.status == status
            assert answer.getheader("Content-Type") == "application/json"
            conn.close()
    finally:
        server.stop()
    assert pipeline._outbox.depth() == 0
