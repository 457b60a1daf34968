"""`python -m dashboard.ingest --workers N`: N processes on one shared subscription, bound client ids, stopped together."""

from __future__ import annotations

import os
import re
import signal
import time
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dashboard.db import Database
from dashboard.models import Classification
from support.ingest_process import start_ingest, write_confs

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def worker_pids(log: Path) -> list[int]:
    """The worker pids the supervising process logged."""
    found = re.search(r"running (\d+) workers \(pids ([\d, ]+)\)", log.read_text())
    return [int(pid) for pid in found.group(2).split(", ")] if found else []


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stored(database: Database) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Classification)) or 0)


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5", ""])
def test_bad_worker_counts_exit_2_with_one_line(tmp_path: Path, value: str) -> None:
    result = subprocess.run([sys.executable, "-m", "dashboard.ingest", "--workers", value], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "MQTT_PASSWORD": "x"}, timeout=60)
    assert result.returncode == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr


def test_worker_count_auto_is_the_usable_cores() -> None:
    from dashboard.ingest.__main__ import parse_args

    assert parse_args([]).workers == len(os.sched_getaffinity(0))
    assert parse_args(["--workers", "auto"]).workers == len(os.sched_getaffinity(0))
    assert parse_args(["--workers", "3"]).workers == 3


def test_two_workers_under_bound_client_ids_store_each_message_once_and_stop_on_sigterm(
    tmp_path: Path, confs: Any, broker_factory: Callable[..., Any], wait: Any, payloads: Any
) -> None:
    broker = broker_factory(settings={"bind_client_id": True})  # as production renders it
    database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    log = tmp_path / "ingest.log"
    ingest = start_ingest(write_confs(tmp_path, confs, broker, database.url), broker, log, "--workers", "2")
    try:
        wait(lambda: log.read_text().count("subscribing") >= 2, timeout=60, what=f"two subscribed workers:\n{log.read_text()}")
        total = 1000
        for device in ("devA", "devB"):
            node = broker.client(device, client_id=device)
            topic = broker.topic(device, "Sensors")
            infos = [node.publish(topic, payloads.to_bytes(payloads.sensors(device, n)), qos=1) for n in range(total // 2)]
            for info in infos:
                info.wait_for_publish(20)
        wait(lambda: stored(database) == total, timeout=60, what=f"{total} results:\n{log.read_text()[-3000:]}")
        pids = worker_pids(log)
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        ingest.send_signal(signal.SIGTERM)
        code = ingest.wait(60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert not [pid for pid in pids if alive(pid)], "a worker outlived SIGTERM"
    counts = [(int(s), int(d)) for s, d in re.findall(r"ingest stopped: (\d+) stored, (\d+) duplicates", text)]
    assert len(counts) == 2 and all(s > 0 for s, _ in counts), f"both workers took a share: {counts}"
    assert sum(s for s, _ in counts) == total and sum(d for _, d in counts) == 0, "each message stored exactly once"
    assert "not authorized" not in text.lower() and "refused" not in text
    database.dispose()


def test_a_worker_that_dies_stops_the_rest_and_the_ingest_exits_non_zero(
    tmp_path: Path, confs: Any, broker: Any, wait: Any
) -> None:
    log = tmp_path / "ingest.log"
    ingest = start_ingest(write_confs(tmp_path, confs, broker, f"sqlite:///{tmp_path / 'ingest.db'}"), broker, log,
                   "--workers", "2")
    try:
        wait(lambda: log.read_text().count("subscribing") >= 2, timeout=60, what=f"two subscribed workers:\n{log.read_text()}")
        first, second = worker_pids(log)
        os.kill(second, signal.SIGKILL)
        assert ingest.wait(60) == 1, log.read_text()[-3000:]
    finally:
        if ingest.poll() is None:
            ingest.kill()
    wait(lambda: not alive(first), timeout=10, what="the surviving worker to stop")
    assert "ingest worker 2 exited" in log.read_text()


def test_a_worker_without_the_engine_sleeps_while_idle(broker: Any, run_ingest: Any, tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'idle.db'}")
    from dashboard.migrations import upgrade_database

    upgrade_database(database.engine)
    run_ingest(broker, database, tick=None)
    before = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - before < 0.3, "an idle worker without the rollout engine spins"
    database.dispose()
