"""A real Prometheus scrapes the dashboard (gunicorn) and a node with bearer tokens, and the documented rules evaluate."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import yaml

from dashboard.db import Database
from dashboard.migrations import upgrade_database
from dashboard.services import tokens, users
from edge_node.metrics import NodeMetrics
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.http_api import InferenceServer
from support.lab_seed import add_device, now
from support.waiting import wait_until
from support.web_server import WebServer

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus package (make system-deps)"),
]
METRICS_TOKEN = "node-metrics-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def documented_rules() -> dict[str, object]:
    """The example alert rules block of docs/monitoring.md."""
    text = (REPO / "docs" / "monitoring.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    return next(b for b in blocks if isinstance(b, dict) and "groups" in b)


def test_prometheus_scrapes_dashboard_and_node_and_the_example_rule_fires(tmp_path: Path):
    confs = json.loads((REPO / "confs.json").read_text())
    confs["dashboard"].update(database_url=f"sqlite:///{tmp_path / 'dash.db'}", secret_key_file=str(tmp_path / "secret"),
                              package_dir=str(tmp_path / "packages"))
    confs_path = tmp_path / "confs.json"
    confs_path.write_text(json.dumps(confs))
    db = Database(confs["dashboard"]["database_url"])
    upgrade_database(db.engine)
    with db.session() as session:
        user, _ = users.create_user(session, "prom", "viewer")
        api_token = tokens.create_api_token(session, user, "prometheus")
        add_device(session, "node-up")
        add_device(session, "node-down", state="OFFLINE", last_seen=now() - timedelta(hours=1))
    db.dispose()

    node_metrics = NodeMetrics("edge-1", lambda: 7, lambda: True)
    node = InferenceServer(object(), "127.0.0.1", 0, "infer", get_routes=GetRoutes(None, None, node_metrics.exposition, METRICS_TOKEN))  # type: ignore[arg-type]
    node.start()
    web = WebServer(confs_path, free_port(), tmp_path / "web.log")
    prom_port = free_port()
    (tmp_path / "dash.token").write_text(api_token)
    (tmp_path / "node.token").write_text(METRICS_TOKEN)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(documented_rules()))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {"job_name": "all-dashboard", "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "dash.token")},
             "static_configs": [{"targets": [f"127.0.0.1:{web.port}"]}]},
            {"job_name": "all-edge", "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "node.token")},
             "static_configs": [{"targets": [f"127.0.0.1:{node.port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        # Unauthenticated scrapes are refused: the token is what Prometheus is let in with.
        assert requests.get(f"{web.base_url}/metrics", timeout=5).status_code == 401
        assert requests.get(f"http://127.0.0.1:{node.port}/metrics", timeout=5).status_code == 401

        def targets_up() -> object:
            try:
                active = requests.get(f"{api}/targets", timeout=2).json()["data"]["activeTargets"]
            except (requests.RequestException, ValueError, KeyError):
                return None
            return len(active) == 2 and all(t["health"] == "up" for t in active) and active

        wait_until(targets_up, timeout=60, what="both targets up", logs=lambda: (tmp_path / "prometheus.log").read_text())

        def value(query: str) -> float | None:
            result = requests.get(f"{api}/query", params={"query": query}, timeout=2).json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert wait_until(lambda: value('dashboard_nodes{state="offline"}') == 1.0, timeout=30, what="offline count")
        assert value('edge_outbox_depth{device="edge-1"}') == 7.0
        assert value("dashboard_review_queue_length") == 0.0

        def firing() -> object:
            groups = requests.get(f"{api}/rules", timeout=2).json()["data"]["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            healthy = len(rules) == 4 and all(r["health"] == "ok" for r in rules.values())
            return healthy and rules["AllEdgeNodesOffline"]["state"] == "firing" and rules

        rules = wait_until(firing, timeout=30, what="the documented rules evaluating, AllEdgeNodesOffline firing")
        assert rules["AllEdgeSelfTestFailing"]["state"] == "inactive"
    finally:
        prometheus.terminate()
        prometheus.wait(20)
        log.close()
        web.stop()
        node.stop()
