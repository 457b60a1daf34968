"""Chromium against the real stack: a node stopped reads OFFLINE live, raises its alert (tile and marker update), the
alert arrives by e-mail and webhook, its chart across the outage shows the gap; admin thresholds, API tokens, API docs,
fleet search and sort, phone navigation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.stack import REPO, Stack, shot, wait_for

pytestmark = pytest.mark.timeout(400)
DEVICE = "stop-0001"


def sign_in(page, stack: Stack) -> None:  # noqa: ANN001
    """Sign in as the admin through the login form."""
    page.goto(stack.base_url + "/login")
    page.fill("#username", stack.admin[0])
    page.fill("#password", stack.admin[1])
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/")


class StoppableNode:
    """One simulated node in its own process, so the test can kill it and start it again."""

    def __init__(self, stack: Stack, root: Path) -> None:
        from dashboard.services import devices

        broker = stack.broker
        info = broker.add_device(DEVICE)  # type: ignore[attr-defined]
        with stack.app.extensions["db"].session() as session:  # type: ignore[attr-defined]
            devices.register_device(session, DEVICE, info.location, info.zone)
        self.root = root
        (root / "credentials.json").write_text(json.dumps({DEVICE: info.password}))
        self.confs = root.parent / "confs.json"
        self.stack = stack
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run the node (results every 2 s, Life every second)."""
        log = (self.root / "node.log").open("ab")
        confs = Path(self.stack.logs).parent / "confs.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_node.simulate", "--nodes", "1", "--device-prefix", "stop", "--rate", "0.5",
             "--life-interval", "1", "--duration", "300", "--confs", str(confs), "--credentials",
             str(self.root / "credentials.json"), "--initial-package", str(self.stack.packages / "tiny-classifier-1.0.0.tar.gz"),
             "--work-dir", str(self.root / "work"), "--cheap", "--workers", "1"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """Stop the node the hard way: no goodbye, as when power or network goes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="module")
def node(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoppableNode]:
    """The stoppable node, started; killed at the end."""
    handle = StoppableNode(stack, tmp_path_factory.mktemp("stoppable"))
    handle.start()
    yield handle
    handle.kill()


def test_admin_sets_a_sites_offline_delay(page, stack: Stack) -> None:  # noqa: ANN001
    sign_in(page, stack)
    page.click('nav a:text-is("Admin")')
    page.wait_for_url("**/admin/")
    form = f'form[data-site="{stack.confs.identity.location}"]'
    page.fill(f"{form} input[name$='offline_after_s']", "5")
    page.click(f"{form} button[type=submit]")
    assert "saved" in page.inner_text(".flash-list")
    assert page.input_value(f"{form} input[name$='offline_after_s']") == "5.0"
    shot(page, "13-admin-alert-thresholds")


def test_a_stopped_node_reads_offline_live_raises_its_alert_and_notifies(page, stack: Stack, node: StoppableNode,  # noqa: ANN001
                                                                         notify_sinks) -> None:  # noqa: ANN001
    mail, hook = notify_sinks
    sign_in(page, stack)
    row = f'tr[data-node="{DEVICE}"]'
    page.wait_for_selector(f'{row} [data-badge="state"]:text-is("ONLINE")', timeout=90_000)
    page.wait_for_selector(".live.on")
    tile = '[data-summary="open_alerts"]'
    before = int(page.inner_text(tile))
    seen = [page.inner_text(f'{row} [data-field="last_seen"]')]

    def another_report() -> bool:
        now = page.inner_text(f'{row} [data-field="last_seen"]')
        if now != seen[-1]:
            seen.append(now)
        return len(seen) >= 6

    wait_for(another_report, 30, "a few reports before the node is stopped", every=0.25)
    node.kill()
    # No reload from here: the stream alone must turn the row OFFLINE and bring the alert.
    page.wait_for_selector(f'{row} [data-badge="state"]:text-is("OFFLINE")', timeout=30_000)
    page.wait_for_selector(f"{row} [data-alerts]:not([hidden])", timeout=30_000)
    wait_for(lambda: int(page.inner_text(tile)) > before, 20, "the open-alerts tile counting the new alert", every=0.25)
    assert "(stale)" not in page.inner_text(row)
    shot(page, "14-fleet-node-stopped-offline-live")

    def offline_sent() -> bool:
        mails = [m for m in mail.messages if DEVICE in m["Subject"] and "offline" in m["Subject"]]
        hooks = [b for b in hook.bodies if b["alert"]["device"] == DEVICE and b["alert"]["kind"] == "offline"]
        return bool(mails and hooks)

    wait_for(offline_sent, 30, "the offline alert by e-mail and webhook", every=0.5)
    [message] = [m for m in mail.messages if DEVICE in m["Subject"]]
    assert message["To"] == "lab-admins@hospital.test" and "CRITICAL" in message["Subject"]
    page.goto(stack.base_url + "/alerts")
    assert DEVICE in page.inner_text("table")
    shot(page, "15-alerts-offline-raised")
    page.goto(stack.base_url + "/audit")
    wait_for(lambda: (page.reload(), "alert.notify" in page.inner_text("table"))[1], 20, "notifications in the audit log")
    shot(page, "16-audit-notifications-sent")


def test_the_chart_across_the_outage_shows_the_gap(page, stack: Stack, node: StoppableNode) -> None:  # noqa: ANN001
    node.start()
    sign_in(page, stack)
    page.goto(f"{stack.base_url}/nodes/{DEVICE}")
    page.wait_for_selector('[data-badge="state"]:text-is("ONLINE")', timeout=90_000)
    page.wait_for_selector(".live.on")
    wait_for(lambda: int(page.get_attribute("#node-charts", "data-drawn") or 0) > 0, 20, "charts drawn")
    drawn = int(page.get_attribute("#node-charts", "data-drawn") or 0)
    wait_for(lambda: int(page.get_attribute("#node-charts", "data-drawn") or 0) >= drawn + 8, 40, "live samples on the charts")
    page.reload()
    wait_for(lambda: int(page.get_attribute("#node-charts", "data-drawn") or 0) > drawn, 20, "charts drawn over the outage")
    series = page.evaluate(f"fetch('/nodes/{DEVICE}/series.json').then(r => r.json())")
    cpu = series["series"]["cpu_percent"]
    gaps = [i for i, v in enumerate(cpu) if v is None and 0 < i < len(cpu) - 1]
    assert gaps, "the outage is a gap in the data the chart draws"
    t = series["t"]
    assert t[gaps[0] + 1] - t[gaps[0] - 1] > series["gap_s"]
    assert page.locator(".uplot").count() == 6 and page.locator("svg.chart").count() == 0
    box = page.locator('[data-chart="cpu_percent"] .u-over').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    page.wait_for_selector('[data-chart="cpu_percent"] .chart-tip:not([hidden])')
    zone = page.inner_text('.chart-controls label[for="since"] [data-zone-label]')
    assert zone != "(UTC)" or page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") in ("UTC", "Etc/UTC")
    shot(page, "17-node-chart-outage-gap")
    page.click('[data-tz="utc"]')
    assert page.inner_text('.chart-controls label[for="since"] [data-zone-label]') == "(UTC)"
    assert "time (utc)" in page.inner_text('[data-chart="cpu_percent"] .u-legend').lower()


def test_api_tokens_api_docs_fleet_tools_and_phone_navigation(browser, page, stack: Stack) -> None:  # noqa: ANN001
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, stack)
    page.goto(stack.base_url + "/admin/")
    page.fill("#name", "LIS export")
    page.click('button:text-is("Create token")')
    token = page.inner_text("[data-token]")
    assert token.startswith("api_")
    shot(page, "18-admin-api-token-created")
    page.goto(stack.base_url + "/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    shot(page, "19-api-docs")
    page.goto(stack.base_url + "/")
    page.wait_for_selector(".live.on")
    page.fill("#fleet-search", "sim-0002")
    wait_for(lambda: page.locator("tbody tr[data-node]:visible").count() == 1, 10, "the search leaving one node")
    page.fill("#fleet-search", "")
    page.click('button[data-sort="node"]')
    page.click('button[data-sort="node"]')
    ids = [r.get_attribute("data-node") for r in page.locator("tbody tr[data-node]").all()]
    assert ids == sorted(ids, reverse=True)
    shot(page, "20-fleet-sorted-with-disk-uptime-software")
    assert violations == [], violations
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    sign_in(small, stack)
    assert not small.locator('nav a:text-is("Alerts")').is_visible()
    small.click("[data-nav-toggle]")
    small.wait_for_selector('nav a:text-is("Alerts")', state="visible")
    shot(small, "21-phone-navigation")
    small.click('nav a:text-is("Alerts")')
    small.wait_for_url("**/alerts")
    phone.close()
