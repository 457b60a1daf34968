"""Chromium against the real stack: a phased rollout runs canary, soak, phase 2 and the rest, and completes."""

from __future__ import annotations

import re

import pytest
from browser.stack import SIM_DEVICES, Stack, shot

pytestmark = pytest.mark.timeout(500)
STATUS = '[data-badge="rollout-status"]'


def sign_in(page, stack: Stack) -> None:  # noqa: ANN001
    """Sign in as the admin through the login form."""
    page.goto(stack.base_url + "/login")
    page.fill("#username", stack.admin[0])
    page.fill("#password", stack.admin[1])
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/")


def upload(page, stack: Stack, package: str) -> None:  # noqa: ANN001
    """Upload a package on the Models page and follow its 'Roll out this release' link."""
    page.goto(stack.base_url + "/models")
    page.set_input_files('input[name="package"]', str(stack.packages / package))
    page.click('button:text-is("Upload and verify")')
    page.wait_for_selector(".flash-list .success")
    page.click('a:text-is("Roll out this release")')
    page.wait_for_url("**/rollouts/new**")


def start_phased(page, *, phases: str, soak_s: int, failures: int) -> None:  # noqa: ANN001
    """Fill the rollout form for every node, canary of one, and start it."""
    page.check('input[name="target_mode"][value="all"]')
    page.fill('input[name="canary_size"]', "1")
    page.fill('input[name="failure_threshold"]', str(failures))
    page.fill('input[name="phases"]', phases)
    page.fill('input[name="soak_s"]', str(soak_s))
    page.check('input[name="health_gate"]')
    page.click('button:text-is("Start rollout")')
    page.wait_for_url(re.compile(r".*/rollouts/\d+$"))
    page.wait_for_selector(".live.on")


def test_a_phased_rollout_runs_canary_soak_phase_two_and_completes(page, stack: Stack) -> None:  # noqa: ANN001
    sign_in(page, stack)
    upload(page, stack, "tiny-classifier-1.1.0.tar.gz")
    start_phased(page, phases="1", soak_s=4, failures=0)
    page.wait_for_selector(f'{STATUS}:text-is("SOAKING")', timeout=150_000)  # live, after the canary went ACTIVE
    assert page.inner_text('[data-count="ACTIVE"]') == "1"
    assert page.inner_text('[data-count="PENDING"]') == str(len(SIM_DEVICES) - 1)
    assert "soak" in page.inner_text('[data-count="reason"]')
    shot(page, "22-rollout-phased-canary-soaking")
    for device in SIM_DEVICES:
        page.wait_for_selector(f'tr[data-target="{device}"] [data-badge="state"]:text-is("ACTIVE")', timeout=240_000)
    page.wait_for_selector(f'{STATUS}:text-is("COMPLETED")', timeout=60_000)
    page.reload()
    stages = sorted(page.locator('#targets-table [data-field="stage"]').all_inner_texts())
    assert len(set(stages)) == 3, stages  # canary, phase 2 and the rest: one node each
    gates = page.locator('[data-phase] [data-field="gate"] .badge').all_inner_texts()
    assert gates and all(g.strip() == "pass" for g in gates), gates
    assert page.inner_text('[data-count="percent"]') == "100"
    shot(page, "23-rollout-phased-completed")
