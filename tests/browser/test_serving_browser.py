"""Chromium against the real stack: a node that serves no model is red with its reason on the fleet page (live and
on reload), and an out-of-distribution result reads "needs review" on the results page, never as a diagnosis."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from browser.stack import Stack, shot
from mqtt_helpers import publish_and_wait

from contracts.messages import NodeState, SensorsMessage, StatusMessage, to_bytes

pytestmark = pytest.mark.timeout(300)
NEEDS_REVIEW = "needs review: outside what this model was trained on"
DEVICE = "edge-nomodel"
REASON = "model 1.0.0 cannot serve: outputs differ from the package's by up to 0.0608 (allowed 0.01)"


def sign_in(page, stack: Stack) -> None:  # noqa: ANN001
    """Sign in as the admin through the login form."""
    page.goto(stack.base_url + "/login")
    page.fill("#username", stack.admin[0])
    page.fill("#password", stack.admin[1])
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/")


@pytest.fixture(scope="module")
def device_client(stack: Stack):  # noqa: ANN201
    """A broker account for one more node, connected (its client id is its account name)."""
    broker = stack.broker
    broker.add_device(DEVICE)  # type: ignore[attr-defined]
    return broker.client(DEVICE, client_id=DEVICE)  # type: ignore[attr-defined]


def test_a_node_without_a_model_is_red_with_its_reason(page, stack: Stack, device_client) -> None:  # noqa: ANN001
    sign_in(page, stack)
    page.wait_for_selector(".live.on")
    now = datetime.now(UTC)
    status = StatusMessage(device=DEVICE, state=NodeState.NO_MODEL, reason=REASON, software_version="0.1.0",
                           runtime="openvino", inference_device="CPU", precision="bf16", sent_at=now, session_started=now)
    publish_and_wait(device_client, stack.broker.topic(DEVICE, "Status"), to_bytes(status), retain=True)  # type: ignore[attr-defined]
    row = f'tr[data-node="{DEVICE}"]'
    page.wait_for_selector(f'{row} [data-badge="state"]:text-is("NO_MODEL")', timeout=30_000)  # arrives live over SSE
    assert page.inner_text(f'{row} [data-field="reason"]') == REASON
    assert "no-model" in (page.get_attribute(row, "class") or "")
    assert page.inner_text(f'{row} [data-field="precision"]') == "bf16"
    shot(page, "10-fleet-no-model-live")
    page.reload()
    badge = page.locator(f'{row} [data-badge="state"]')
    assert badge.inner_text() == "NO_MODEL" and page.locator(f'{row} [data-field="reason"]').inner_text() == REASON
    red = badge.evaluate("el => getComputedStyle(el).color")
    assert red == "rgb(192, 57, 43)", red
    shot(page, "11-fleet-no-model")


def test_an_out_of_distribution_result_reads_needs_review(page, stack: Stack, device_client) -> None:  # noqa: ANN001
    sign_in(page, stack)
    page.goto(stack.base_url + "/results?node=" + DEVICE)
    page.wait_for_selector(".live.on")
    result = SensorsMessage(
        device=DEVICE, sample_id="ood-sample-1", image_sha256=hashlib.sha256(b"black field").hexdigest(), label="Pro",
        confidence=0.98, probabilities={"Benign": 0.0, "Early": 0.01, "Pre": 0.01, "Pro": 0.98}, model_version="1.0.0",
        inference_ms=2.0, uncertain=False, out_of_distribution=True, ood_score=42.5,
    )
    publish_and_wait(device_client, stack.broker.topic(DEVICE, "Sensors"), to_bytes(result))  # type: ignore[attr-defined]
    live = page.locator("tr[data-result]", has_text="ood-sample-1")
    live.wait_for(timeout=30_000)
    assert NEEDS_REVIEW in live.inner_text() and "Pro" not in live.locator("[data-verdict]").inner_text()
    page.goto(stack.base_url + "/results?ood=yes")
    rendered = page.locator("tr[data-result]", has_text="ood-sample-1")
    assert rendered.locator('[data-verdict="review"]').inner_text() == NEEDS_REVIEW
    assert "42.50" in rendered.inner_text()
    shot(page, "12-results-needs-review")
