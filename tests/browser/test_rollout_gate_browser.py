"""Chromium against the real stack: a release whose results turn uncertain fails the health gate after the canary
soaks, and the rollout halts; the Phases table follows it live."""

from __future__ import annotations

from typing import Any

import pytest
from browser.stack import SIM_DEVICES, Stack, shot, wait_for
from browser.test_phased_rollout_browser import STATUS, sign_in, start_phased, upload
from sqlalchemy import func, select
from support.tiny_package import make_tiny_package

from dashboard.models import Classification, Device

pytestmark = pytest.mark.timeout(500)
BAD = "1.2.0"
BASELINE = 12  # results per node before the update; the gate wants at least 10 before and 10 after
CANARY = '#phases-table tr[data-phase="0"]'


@pytest.fixture(scope="module")
def stack_tweaks() -> dict[str, Any]:
    """Nodes serving BAD answer uncertain; the stand-in's own answers are at least 35% sure, so none is before."""
    return {"simulate_args": ["--uncertain-version", BAD], "edge_node": {"confidence_threshold": 0.3}}


def stored(stack: Stack, device_id: str) -> int:
    """Results the dashboard has stored from one node."""
    with stack.app.extensions["db"].session(readonly=True) as session:  # type: ignore[attr-defined]
        return session.scalar(select(func.count()).where(Classification.device_id == device_id)) or 0


def models(stack: Stack) -> dict[str, str | None]:
    """Each node's model version as the dashboard knows it."""
    with stack.app.extensions["db"].session(readonly=True) as session:  # type: ignore[attr-defined]
        return {d.id: d.model_version for d in session.scalars(select(Device).where(Device.id.in_(SIM_DEVICES)))}


def test_a_release_whose_results_turn_uncertain_fails_the_gate_and_halts(page, stack: Stack) -> None:  # noqa: ANN001
    make_tiny_package(stack.packages, stack.signing_key, BAD, seed=2)
    wait_for(lambda: min(stored(stack, d) for d in SIM_DEVICES) >= BASELINE, 120, "a baseline of results on every node")
    sign_in(page, stack)
    upload(page, stack, f"tiny-classifier-{BAD}.tar.gz")
    start_phased(page, phases="1", soak_s=4, failures=0)

    page.wait_for_selector(f'{STATUS}:text-is("SOAKING")', timeout=150_000)
    # The Phases table follows the stream, not only the targets table: the canary row counts its node ACTIVE.
    wait_for(lambda: page.inner_text(f'{CANARY} [data-field="active"]') == "1", 10, "canary row live: 1 active")
    assert page.inner_text(f'{CANARY} [data-field="in_flight"]') == "0"

    page.wait_for_selector(f'{STATUS}:text-is("HALTED")', timeout=150_000)
    gate = page.locator(f'{CANARY} [data-field="gate"]')
    wait_for(lambda: gate.locator(".badge").inner_text() == "fail", 10, "the canary's gate shows fail live")
    assert "uncertain 0% → 100%" in gate.inner_text()
    reason = page.inner_text('[data-count="reason"]')
    assert "health gate failed after the canary" in reason and "uncertain share rose from 0% to 100%" in reason
    states = page.locator('#targets-table [data-badge="state"]').all_inner_texts()
    assert sorted(states) == ["ACTIVE", "PENDING", "PENDING"], states
    assert page.locator('button:text-is("Resume")').is_visible()
    assert not page.locator('button:text-is("Halt")').is_visible()
    shot(page, "24-rollout-gate-failed-halted")

    [canary] = [d for d in SIM_DEVICES if page.inner_text(f'tr[data-target="{d}"] [data-badge="state"]') == "ACTIVE"]
    wait_for(lambda: models(stack) == {d: BAD if d == canary else "1.0.0" for d in SIM_DEVICES}, 10,
             "only the canary serves the bad release")
    page.reload()  # the server-rendered page says the same
    assert page.inner_text(STATUS) == "HALTED"
    assert page.inner_text(f'{CANARY} [data-field="active"]') == "1"
    assert page.inner_text(f'{CANARY} [data-field="gate"] .badge') == "fail"
    assert page.inner_text('#phases-table tr[data-phase="1"] [data-field="active"]') == "0"
