"""docker/confs*.json validate and differ from the repo's confs.json only where a container must."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from deploy.compose_support import ROOT

from contracts.confs import Confs, load_confs

# Keys that name container hosts, ports, paths or TLS; everything else must match confs.json.
DEPLOYMENT_KEYS = {
    "mqtt.host", "mqtt.port", "mqtt.tls", "mqtt.ca_file", "mqtt.password_file",
    "edge_node.inputs.watch_dir", "edge_node.model_store", "edge_node.initial_package", "edge_node.outbox_path",
    "edge_node.http_host", "edge_node.token_file", "edge_node.images.dir",
    "dashboard.database_url", "dashboard.http_host", "dashboard.public_url", "dashboard.secret_key_file",
    "dashboard.package_dir", "trainer.data_dir",
}


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _dump(path: Path) -> dict[str, Any]:
    """Validated confs with defaults filled in, flattened to dotted keys."""
    return _flat(load_confs(path).model_dump(mode="json"))


@pytest.mark.parametrize("name", ["confs.json", "confs.edge-node-2.json"])
def test_docker_confs_validate(name: str) -> None:
    assert isinstance(load_confs(ROOT / "docker" / name), Confs)


def test_node_confs_differ_only_in_the_device_id() -> None:
    first, second = _dump(ROOT / "docker" / "confs.json"), _dump(ROOT / "docker" / "confs.edge-node-2.json")
    assert {k for k in first if first[k] != second[k]} == {"edge_node.device_id"}


def test_docker_confs_match_the_repo_confs_outside_deployment_keys() -> None:
    repo, docker = _dump(ROOT / "confs.json"), _dump(ROOT / "docker" / "confs.json")
    drift = {k: (repo[k], docker[k]) for k in repo if k not in DEPLOYMENT_KEYS and repo[k] != docker[k]}
    assert not drift, f"docker/confs.json drifted from confs.json: {drift}"


def test_container_paths_of_writable_state_are_on_the_data_volume(docker_confs: Confs) -> None:
    edge, dashboard = docker_confs.edge_node, docker_confs.dashboard
    for path in (edge.model_store, edge.outbox_path, edge.inputs.watch_dir or "/data", dashboard.package_dir,
                 dashboard.secret_key_file, dashboard.database_url.removeprefix("sqlite:///")):
        assert path.startswith("/data/"), path
    assert edge.http_host == dashboard.http_host == "0.0.0.0", "inside a container the service must listen outside"


def test_no_path_is_left_relative_to_the_read_only_app_dir() -> None:
    """Defaults such as `var/edge/images` resolve under /app, which the container's user cannot write."""
    relative = {key: value for key, value in _dump(ROOT / "docker" / "confs.json").items()
                if isinstance(value, str) and value.startswith(("var/", "sqlite:///var/"))}
    assert not relative, f"point these at the /data volume: {relative}"


def test_initial_package_is_the_released_package(docker_confs: Confs) -> None:
    initial = docker_confs.edge_node.initial_package
    assert initial and initial.startswith("models/") and initial.endswith(".tar.gz")
    repo_initial = json.loads((ROOT / "confs.json").read_text())["edge_node"].get("initial_package")
    if repo_initial:
        assert initial == repo_initial
    released = sorted((ROOT / "models").glob("*.tar.gz"))
    if not released:
        pytest.skip("no released package in models/ yet")
    assert ROOT / initial in released, f"{initial} is not one of {[p.name for p in released]}"
