"""Ingest as its own process, killed with SIGKILL mid-burst and restarted, loses nothing and stores nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dashboard.db import Database
from dashboard.models import Classification
from support.ingest_process import start_ingest, write_confs

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def stored(database: Database) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Classification)) or 0)


def test_sigkill_mid_burst_then_restart_loses_nothing(tmp_path, confs, broker, database, payloads, wait) -> None:
    confs_path = write_confs(tmp_path, confs, broker, database.url)
    log = tmp_path / "ingest.log"
    ingest = start_ingest(confs_path, broker, log, "--workers", "1", "--no-engine")
    app_status = broker.collector(broker.dashboard_user, broker.app_topic())
    app_status.wait_for(broker.app_topic(), timeout=30)
    node = broker.client("devA")
    topic = broker.topic("devA", "Sensors")
    total = 3000
    bodies = [payloads.to_bytes(payloads.sensors("devA", n)) for n in range(total)]
    # Publish from a thread that keeps going while the kill lands, so it lands mid-burst.
    infos: list = []

    def feed() -> None:
        for body in bodies:
            infos.append(node.publish(topic, body, qos=1))

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait(lambda: stored(database) >= 200, timeout=30, what="the first batches")
    fed_before_kill = len(infos)
    ingest.send_signal(signal.SIGKILL)
    ingest.wait(10)
    killed_at = stored(database)
    feeder.join(60)
    for info in infos:
        info.wait_for_publish(20)
    assert killed_at < fed_before_kill, f"the kill came after all {fed_before_kill} results fed so far were stored"
    ingest = start_ingest(confs_path, broker, log, "--workers", "1", "--no-engine")
    try:
        wait(lambda: stored(database) == total, timeout=60, what=f"{total} results after restart ({log.read_text()[-2000:]})")
        with database.session(readonly=True) as session:
            distinct = session.scalar(select(func.count(func.distinct(Classification.sample_id))))
        assert distinct == total
    finally:
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(20) == 0, log.read_text()[-2000:]
    assert "ingest stopped" in log.read_text()


def test_ingest_cli_refuses_bad_arguments_cleanly(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"mqtt": 1}')
    for args in (["--confs", str(bad)], ["--confs", str(tmp_path / "missing.json")], ["--shared", "a/b"]):
        result = subprocess.run([sys.executable, "-m", "dashboard.ingest", *args], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "MQTT_PASSWORD": "x"}, timeout=60)
        assert result.returncode == 2 and "error" in result.stderr and "Traceback" not in result.stderr
