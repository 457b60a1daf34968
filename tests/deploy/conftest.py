"""Fixtures for the static checks of docker-compose.yml, the Dockerfiles and docker/confs.json."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.compose_support import COMPOSE_FILE, ROOT

from contracts.confs import Confs, load_confs


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml as plain data (YAML anchors resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services section."""
    return compose["services"]


@pytest.fixture(scope="session")
def docker_confs() -> Confs:
    """docker/confs.json, validated against the schema."""
    return load_confs(ROOT / "docker" / "confs.json")


@pytest.fixture(scope="session")
def rendered_broker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repo's docker confs prepared by docker/prepare.py; returns that root."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "docker").mkdir()
    for confs in (ROOT / "docker").glob("confs*.json"):
        shutil.copy(confs, root / "docker" / confs.name)
    result = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "prepare.py"), "--root", str(root)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return root
