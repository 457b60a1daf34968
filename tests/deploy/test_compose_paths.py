"""Every build context, Dockerfile and mounted host path exists in the repo or is made by docker/prepare.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy.compose_support import CONFS_TARGET, NODE_SERVICES, ROOT, mount_source, mounts

# Outside the repo on purpose: the dataset is never copied into it (see docker/README.md).
EXTERNAL_SOURCES = {"${DATA_DIR:-../shared/datasets/all-aria}"}


def _bind_sources(services: dict[str, Any]) -> set[str]:
    return {m["source"] for s in services.values() for m in mounts(s) if m["type"] == "bind"}


def _git_ignored(path: str) -> bool:
    """True if git ignores path as a file or (for patterns like `keys/`) as a directory."""
    for candidate in (path, path + "/"):
        result = subprocess.run(["git", "check-ignore", "-q", candidate], cwd=ROOT, capture_output=True, timeout=30)
        if result.returncode not in (0, 1):
            pytest.skip("not a git checkout")
        if result.returncode == 0:
            return True
    return False


def test_build_contexts_and_dockerfiles_exist(services: dict[str, Any]) -> None:
    built = [s for s in services.values() if "build" in s]
    assert built, "no service is built from this repo"
    for service in built:
        context = ROOT / service["build"]["context"]
        assert context.is_dir(), context
        assert (context / service["build"]["dockerfile"]).is_file(), service["build"]


def test_every_service_is_built_here_from_one_base_image(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert "build" in service, f"{name} would be pulled, and registries may be out of reach"
        assert service["build"]["args"] == {"BASE_IMAGE": "${BASE_IMAGE:-python:3.11-slim-bookworm}"}, name
        assert service["image"].startswith("all-edge/"), name


def test_bind_mounts_exist_or_are_generated_by_prepare(services: dict[str, Any], rendered_broker: Path) -> None:
    for source in _bind_sources(services) - EXTERNAL_SOURCES:
        assert source.startswith("./"), f"{source}: bind sources are relative to the repo"
        if not (ROOT / source).exists():
            assert (rendered_broker / source).exists(), f"{source} is neither in the repo nor made by prepare.py"


def test_generated_mounts_are_git_ignored_and_documented(services: dict[str, Any]) -> None:
    readme = (ROOT / "docker" / "README.md").read_text()
    for source in _bind_sources(services) - EXTERNAL_SOURCES:
        relative = source.removeprefix("./")
        if (ROOT / relative).exists() and not _git_ignored(relative):
            continue
        assert _git_ignored(relative), f"{relative} is generated but not git-ignored"
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))] + [relative]
        assert any(f"`{p}" in readme for p in prefixes), f"{relative} is not documented in docker/README.md"


def test_external_sources_are_documented(services: dict[str, Any]) -> None:
    readme = (ROOT / "docker" / "README.md").read_text()
    for source in EXTERNAL_SOURCES & _bind_sources(services):
        variable = re.match(r"\$\{(\w+)", source)
        assert variable and variable.group(1) in readme, source


def test_secrets_come_from_git_ignored_env_files(services: dict[str, Any]) -> None:
    env_files = {path for s in services.values() for path in s.get("env_file", [])}
    assert {"docker/dashboard.env", "docker/edge-node-1.env", "docker/edge-node-2.env"} <= env_files
    for path in env_files:
        assert _git_ignored(path), f"{path} would be committed"
    assert not _git_ignored("docker/example.env")
    assert (ROOT / "docker" / "example.env").is_file()


def test_each_node_mounts_its_own_confs_naming_its_device(services: dict[str, Any]) -> None:
    for name in NODE_SERVICES:
        mount = mount_source(services[name], CONFS_TARGET)
        assert mount is not None and mount["read_only"], name
        assert json.loads((ROOT / mount["source"]).read_text())["edge_node"]["device_id"] == name
