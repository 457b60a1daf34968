"""Chromium against the real stack: sign in, live fleet, node charts, upload a model, roll it out to ACTIVE."""

from __future__ import annotations

import re

import pytest

from browser.stack import SIM_DEVICES, Stack, shot, wait_for

pytestmark = pytest.mark.timeout(400)


def sign_in(page, stack: Stack, who: tuple[str, str]) -> None:  # noqa: ANN001
    """Sign in through the login form."""
    page.goto(stack.base_url + "/login")
    page.fill("#username", who[0])
    page.fill("#password", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/")


def badge_texts(page, selector: str) -> list[str]:  # noqa: ANN001
    """Text of every element matching selector."""
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def test_sign_in_and_watch_the_fleet_live(page, stack: Stack) -> None:  # noqa: ANN001
    page.goto(stack.base_url + "/")
    assert "/login" in page.url
    page.fill("#username", stack.admin[0])
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert "Invalid username or password." in page.inner_text(".flash-list")
    shot(page, "01-login-refused")
    sign_in(page, stack, stack.admin)
    for device in SIM_DEVICES:
        page.wait_for_selector(f'tr[data-node="{device}"] [data-badge="state"]:text-is("ONLINE")', timeout=90_000)
    page.wait_for_selector('.live.on')
    seen = page.inner_text('tr[data-node="sim-0001"] [data-field="last_seen"]')
    wait_for(lambda: page.inner_text('tr[data-node="sim-0001"] [data-field="last_seen"]') != seen, 20,
             "a newer last-seen time without reloading the page", every=0.25)
    cpu = page.inner_text('tr[data-node="sim-0001"] [data-field="cpu"]')
    assert re.fullmatch(r"\d+", cpu.strip()), cpu
    assert page.inner_text('tr[data-node="sim-0001"] [data-field="model_version"]') == "1.0.0"
    shot(page, "02-fleet")


def test_node_page_shows_charts_results_and_range_choice(page, stack: Stack) -> None:  # noqa: ANN001
    sign_in(page, stack, stack.admin)
    page.click('a[href="/nodes/sim-0002"]')
    page.wait_for_url("**/nodes/sim-0002")
    wait_for(lambda: int(page.get_attribute("#node-charts", "data-drawn") or 0) >= 3, 30,
             "telemetry on the node's charts", every=0.5)
    assert page.locator("#node-charts .uplot").count() == 6
    page.click('.range-tabs a:text-is("1 h")')
    page.wait_for_url("**range=1h")
    assert page.locator(".range-tabs a.active").inner_text() == "1 h"
    shot(page, "03-node")
    page.goto(stack.base_url + "/results")
    page.wait_for_selector("tr[data-result]")
    count = page.locator("tr[data-result]").count()
    wait_for(lambda: page.locator("tr[data-result]").count() > count, 30, "a live result row", every=0.5)
    shot(page, "04-results")


def test_upload_a_model_and_roll_it_out_to_active(page, stack: Stack) -> None:  # noqa: ANN001
    sign_in(page, stack, stack.admin)
    page.goto(stack.base_url + "/models")
    page.set_input_files('input[name="package"]', str(stack.packages / "tiny-classifier-1.1.0.tar.gz"))
    page.click('button:text-is("Upload and verify")')
    page.wait_for_selector(".flash-list .success")
    assert "Registered tiny-classifier 1.1.0" in page.inner_text(".flash-list")
    shot(page, "05-release")
    page.click('a:text-is("Roll out this release")')
    page.wait_for_url("**/rollouts/new**")
    page.check('input[name="target_mode"][value="all"]')
    page.fill('input[name="canary_size"]', "1")
    page.fill('input[name="failure_threshold"]', "0")
    shot(page, "06-rollout-form")
    page.click('button:text-is("Start rollout")')
    page.wait_for_url(re.compile(r".*/rollouts/\d+$"))
    assert "started" in page.inner_text(".flash-list")
    page.wait_for_selector('.live.on')
    for device in SIM_DEVICES:
        page.wait_for_selector(f'tr[data-target="{device}"] [data-badge="state"]:text-is("ACTIVE")', timeout=150_000)
    page.wait_for_selector('[data-badge="rollout-status"]:text-is("COMPLETED")', timeout=30_000)
    assert page.inner_text('[data-count="ACTIVE"]') == str(len(SIM_DEVICES))
    shot(page, "07-rollout-active")
    page.goto(stack.base_url + "/")
    for device in SIM_DEVICES:
        page.wait_for_selector(f'tr[data-node="{device}"] [data-field="model_version"]:text-is("1.1.0")', timeout=30_000)
    shot(page, "08-fleet-after-rollout")
    page.goto(stack.base_url + "/audit")
    assert "release.register" in page.inner_text("table") and "rollout.create" in page.inner_text("table")
    shot(page, "09-audit")


def test_viewer_sees_no_admin_controls(page, stack: Stack) -> None:  # noqa: ANN001
    sign_in(page, stack, stack.viewer)
    page.goto(stack.base_url + "/models")
    assert page.locator('input[name="package"]').count() == 0
    page.goto(stack.base_url + "/rollouts")
    assert page.locator('a:text-is("New rollout")').count() == 0
    page.goto(stack.base_url + "/alerts")
    shot(page, "10-alerts-viewer")
