"""The real stack for browser tests: Mosquitto, ingest, the web app on a real HTTP server, simulated nodes, Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_harness import BrokerHandle, free_port
from browser.stack import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, SIM_DEVICES, Stack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.sinks import MailSink, WebhookSink, smtp_sink, webhook_sink
from support.tiny_package import make_tiny_package
from werkzeug.serving import BaseWSGIServer, make_server

from contracts.confs import Confs
from contracts.model_package import public_key_text


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM one process we started, SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """Debian's Chromium, or skip saying it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright package")
    return CHROMIUM


@pytest.fixture(scope="module")
def notify_sinks() -> Iterator[tuple[MailSink, WebhookSink]]:
    """A local SMTP sink and webhook receiver the stack's dashboard sends its alerts to."""
    with smtp_sink() as mail, webhook_sink() as hook:
        yield mail, hook


@pytest.fixture(scope="module")
def stack_tweaks() -> dict[str, Any]:
    """What a test module changes in its stack (override it there): `edge_node` confs keys, `simulate_args`."""
    return {}


@pytest.fixture(scope="module")
def stack(chromium_path: str, broker_factory_module: Callable[..., BrokerHandle], tmp_path_factory: pytest.TempPathFactory,
          notify_sinks: tuple[MailSink, WebhookSink], stack_tweaks: dict[str, Any]) -> Iterator[Stack]:
    """Broker with three simulated devices, ingest as a subprocess, the web app in a server thread, the fleet."""
    from dashboard import create_app
    from dashboard.migrations import upgrade_database
    from dashboard.services import devices, tokens, users

    root = tmp_path_factory.mktemp("stack")
    broker = broker_factory_module(devices=SIM_DEVICES)
    key = Ed25519PrivateKey.generate()
    packages = root / "packages-src"
    initial = make_tiny_package(packages, key, "1.0.0")
    make_tiny_package(packages, key, "1.1.0", seed=1)
    web_port = free_port()
    raw = json.loads((REPO / "confs.json").read_text())
    raw["mqtt"].update(host=broker.host, port=broker.port)
    raw["identity"].update(location=broker.location, zone=broker.zone)
    raw["dashboard"].update(
        database_url=f"sqlite:///{root / 'dashboard.db'}", secret_key_file=str(root / "secret_key"),
        package_dir=str(root / "packages"), public_url=f"http://127.0.0.1:{web_port}", offline_after_s=10.0,
        alerts={"evaluate_every_s": 1.0},
        notify={"smtp_host": "127.0.0.1", "smtp_port": notify_sinks[0].port, "email_to": ["lab-admins@hospital.test"],
                "webhook_url": notify_sinks[1].url, "retry_after_s": 1.0},
    )
    raw["ota"]["trusted_public_keys"] = [public_key_text(key)]
    raw["edge_node"].update(stack_tweaks.get("edge_node", {}))
    confs_path = root / "confs.json"
    confs_path.write_text(json.dumps(raw))
    confs = Confs.model_validate(raw)

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    app = create_app(confs, insecure_cookies=True, SSE_LIFETIME_S=20.0, SSE_POLL_S=0.5)
    db = app.extensions["db"]
    upgrade_database(db.engine)
    with db.session() as session:
        admin = users.create_user(session, "admin", "admin")
        viewer = users.create_user(session, "viewer", "viewer")
        device_tokens = {}
        for device_id in SIM_DEVICES:
            device = devices.register_device(session, device_id, broker.location, broker.zone)
            device_tokens[device_id] = tokens.create_device_token(session, device)
    (root / "credentials.json").write_text(json.dumps({d: broker.credentials[d] for d in SIM_DEVICES}))
    (root / "tokens.json").write_text(json.dumps(device_tokens))

    server: BaseWSGIServer = make_server("127.0.0.1", web_port, app, threaded=True)
    server_thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    server_thread.start()

    logs = root / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    ingest_log = (logs / "ingest.log").open("wb")
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "dashboard.ingest", "--confs", str(confs_path), "--flush-ms", "50"],
        cwd=REPO, env={**env, "MQTT_PASSWORD": broker.credentials[broker.dashboard_user]},
        stdout=ingest_log, stderr=subprocess.STDOUT,
    ))
    sim_log = (logs / "simulate.log").open("wb")
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "edge_node.simulate", "--nodes", str(len(SIM_DEVICES)), "--rate", "0.5",
         "--life-interval", "1", "--duration", "600", "--confs", str(confs_path),
         "--credentials", str(root / "credentials.json"), "--tokens", str(root / "tokens.json"),
         "--initial-package", str(initial), "--work-dir", str(root / "fleet"), "--cheap", "--workers", "2",
         "--log-level", "INFO", *stack_tweaks.get("simulate_args", [])],
        cwd=REPO, env=env, stdout=sim_log, stderr=subprocess.STDOUT,
    ))
    try:
        yield Stack(f"http://127.0.0.1:{web_port}", confs, (admin[0].username, admin[1]),
                    (viewer[0].username, viewer[1]), key, packages, app, logs, broker)
    finally:
        for process in reversed(processes):
            _stop(process)
        ingest_log.close()
        sim_log.close()
        server.shutdown()
        server_thread.join(10)
        db.dispose()
        for name in ("ingest.log", "simulate.log"):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(logs / name, ARTIFACTS / f"browser-{name}")


@pytest.fixture(scope="module")
def broker_factory_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BrokerHandle]]:
    """Module-scoped started brokers (the harness's broker_factory is per test)."""
    from broker_harness import broker_pool

    with broker_pool(tmp_path_factory) as factory:
        yield factory


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh browser page, 1440x900."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
