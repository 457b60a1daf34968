"""`python -m dashboard.ingest` as its own process against a test broker and database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def write_confs(tmp_path: Path, confs: Any, broker: Any, database_url: str) -> Path:
    """A confs.json pointing ingest at the harness broker and the test database."""
    data = confs.model_copy(deep=True)
    data.mqtt.host, data.mqtt.port = broker.host, broker.port
    data.identity.location = broker.location
    data.dashboard.database_url = database_url
    path = tmp_path / "ingest-confs.json"
    path.write_text(data.model_dump_json(indent=2))
    return path


def start_ingest(confs_path: Path, broker: Any, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m dashboard.ingest --confs ... ARGS` with the dashboard's broker password, logging to log."""
    env = {**os.environ, "MQTT_PASSWORD": broker.credentials[broker.dashboard_user]}
    env.pop("DATABASE_URL", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "dashboard.ingest", "--confs", str(confs_path), *args],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
