"""Chromium against the real stack: a specimen's fields arrive over MQTT and its page shows the verdict; a reviewer
reviews an uncertain result with the image fetched from the node; the agreement chart (screenshots 30-33)."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from browser.stack import Stack, shot, wait_for
from PIL import Image
from sqlalchemy import func, insert, select

from contracts.messages import SensorsMessage, to_bytes
from dashboard.models import Classification, Review, utcnow
from dashboard.services import users
from dashboard.services.node_images import NodeImages
from edge_node.images import ImageStore
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.http_api import InferenceServer
from mqtt_helpers import publish_and_wait

pytestmark = pytest.mark.timeout(300)
NODE = "lab-0001"
SPECIMEN = "SP-2025-0042"
IMAGE_TOKEN = "browser-dashboard-image-token"
CLASSES = ("Benign", "Early", "Pre", "Pro")


def smear(seed: int) -> bytes:
    """A small stained-looking field of view."""
    image = Image.new("RGB", (160, 160), (232, 196, 210))
    for i in range(6):
        x, y = (seed * 37 + i * 53) % 130, (seed * 61 + i * 29) % 130
        image.paste((120 + i * 10, 60, 140), (x, y, x + 22, y + 22))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def message(label: str, confidence: float, data: bytes, uncertain: bool = False, ood: bool = False) -> SensorsMessage:
    rest = (1 - confidence) / 3
    return SensorsMessage(
        device=NODE, sample_id=uuid.uuid4().hex, image_sha256=hashlib.sha256(data).hexdigest(), label=label,
        confidence=confidence, probabilities={c: confidence if c == label else rest for c in CLASSES}, model_version="1.0.0",
        inference_ms=4.0, uncertain=uncertain, out_of_distribution=ood, ood_score=9.5 if ood else 1.2, specimen_id=SPECIMEN,
    )


@pytest.fixture(scope="module")
def node_images(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageStore]:
    """The node's image endpoint, and the dashboard pointed at it with its own token."""
    store = ImageStore(tmp_path_factory.mktemp("node-images"), retention_s=3600)
    server = InferenceServer(object(), "127.0.0.1", 0, "infer", get_routes=GetRoutes(store, IMAGE_TOKEN, None, None))  # type: ignore[arg-type]
    server.start()
    review = stack.app.config["CONFS"].dashboard.review  # type: ignore[attr-defined]
    review.node_urls = {NODE: f"http://127.0.0.1:{server.port}"}
    stack.app.extensions["node_images"] = NodeImages(review, IMAGE_TOKEN)  # type: ignore[attr-defined]
    yield store
    server.stop()


def sign_in(page, stack: Stack, username: str, password: str) -> None:  # noqa: ANN001
    page.goto(stack.base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/")


def _db(stack: Stack):  # noqa: ANN202
    return stack.app.extensions["db"]  # type: ignore[attr-defined]


def test_specimen_review_and_agreement_in_the_browser(stack: Stack, page, node_images: ImageStore):  # noqa: ANN001
    fields = [("Benign", 0.96, False, False)] * 4 + [("Pre", 0.93, False, False), ("Pre", 0.91, False, False),
                                                     ("Pro", 0.55, True, False), ("Early", 0.7, False, True)]
    from dashboard.services import devices

    info = stack.broker.add_device(NODE)  # type: ignore[attr-defined]
    with _db(stack).session() as session:
        devices.register_device(session, NODE, info.location, info.zone)
    client = stack.broker.client(NODE, client_id=NODE)  # type: ignore[attr-defined]
    payloads = []
    for seed, (label, confidence, uncertain, ood) in enumerate(fields):
        data = smear(seed)
        node_images.put(hashlib.sha256(data).hexdigest(), data)
        payloads.append(to_bytes(message(label, confidence, data, uncertain, ood)))

    def stored() -> int:
        with _db(stack).session(readonly=True) as session:
            return int(session.scalar(select(func.count()).where(Classification.specimen_id == SPECIMEN)) or 0)

    # The broker applies a new account's ACL on reload and drops (yet acknowledges) what comes before it:
    # publish again until stored; ingest dedupes on message_id, so repeats are harmless.
    for _ in range(6):
        for payload in payloads:
            publish_and_wait(client, stack.broker.topic(NODE, "Sensors"), payload)  # type: ignore[attr-defined]
        try:
            wait_for(lambda: stored() == len(fields), 8, "the specimen's fields stored by ingest")
            break
        except TimeoutError:
            continue
    client.disconnect()
    assert stored() == len(fields)
    with _db(stack).session() as session:
        _, password = users.create_user(session, "hema", "reviewer")
        uncertain_id = session.scalar(select(Classification.id).where(Classification.specimen_id == SPECIMEN, Classification.uncertain))
        # Two weeks of earlier sampled reviews of this node and model, so the chart has a history to show.
        for day in range(14, 0, -1):
            at = utcnow() - timedelta(days=day)
            for n in range(8):
                row = {"message_id": "0000" + str(uuid.uuid4())[4:], "device_id": NODE, "sample_id": uuid.uuid4().hex,
                       "image_sha256": "ab" * 32, "label": "Benign", "confidence": 0.95,
                       "probabilities": {"Benign": 0.95, "Early": 0.02, "Pre": 0.02, "Pro": 0.01}, "model_version": "1.0.0",
                       "inference_ms": 3.0, "uncertain": False, "out_of_distribution": False, "sent_at": at, "received_at": at}
                result_id = session.execute(insert(Classification).returning(Classification.id), [row]).scalar_one()
                agrees = n < (7 if day > 5 else 5)
                session.add(Review(classification_id=result_id, reviewer="hema", agrees=agrees, label="Benign" if agrees else "Pre",
                                   sampled=True, device_id=NODE, model_version="1.0.0", reviewed_at=at))

    sign_in(page, stack, "hema", password)
    page.goto(f"{stack.base_url}/specimens")
    row = page.locator(f'tr[data-specimen="{SPECIMEN}"]')
    assert "suspicious" in row.inner_text()
    page.click(f"text={SPECIMEN}")
    page.wait_for_selector("#specimen-verdict")
    assert page.inner_text("#specimen-verdict") == "suspicious"
    assert page.locator("#fields-table tbody tr").count() == len(fields)
    shot(page, "30-specimen-page")

    page.goto(f"{stack.base_url}/review")
    page.locator(f'tr[data-result="{uncertain_id}"] >> text=Review').click()
    page.wait_for_function("() => { const i = document.getElementById('review-image'); return i && i.complete && i.naturalWidth > 0; }")
    assert page.evaluate("document.getElementById('review-image').naturalWidth") == 160
    page.check('input[name=label][value="Pre"]')
    page.fill("#comment", "Pre-B blast; the model hesitated between Pro and Pre")
    shot(page, "31-review-uncertain-result")
    page.click("button:has-text('Save review')")
    page.wait_for_url(f"{stack.base_url}/review")
    assert "Corrected to Pre" in page.inner_text(".flash-list")
    assert page.locator(f'tr[data-result="{uncertain_id}"]').count() == 0

    page.goto(f"{stack.base_url}/specimens/{SPECIMEN}")
    assert "corrected to Pre" in page.inner_text("#fields-table")
    page.goto(f"{stack.base_url}/review/agreement?by=device&key={NODE}")
    page.wait_for_selector("#agreement-chart[data-drawn]")
    assert int(page.get_attribute("#agreement-chart", "data-drawn") or 0) == 15
    assert page.locator("#agreement-chart canvas").count() == 1
    shot(page, "32-agreement-chart")
    with _db(stack).session(readonly=True) as session:
        from dashboard.models import AuditLog

        assert session.scalars(select(AuditLog).where(AuditLog.action == "review.corrected", AuditLog.actor == "hema")).one()
