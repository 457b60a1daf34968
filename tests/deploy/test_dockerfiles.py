"""Each image builds FROM a BASE_IMAGE argument, runs as a non-root user and installs only its part's extra."""

from __future__ import annotations

import re
import tomllib

import pytest
from deploy.compose_support import ROOT

IMAGES = {"edge_node": "edge", "dashboard": "dashboard", "trainer": "trainer"}
OTHER_PARTS = {"edge_node": ("dashboard", "trainer"), "dashboard": ("edge_node", "trainer"), "trainer": ("edge_node", "dashboard")}
DEFAULT_BASE = "ARG BASE_IMAGE=python:3.11-slim-bookworm"


def _dockerfile(part: str) -> str:
    return (ROOT / "docker" / f"{part}.Dockerfile").read_text()


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.parametrize("part", [*IMAGES, "broker"])
def test_every_stage_starts_from_the_base_image_argument(part: str) -> None:
    text = _dockerfile(part)
    assert text.count(DEFAULT_BASE) == 1 and text.index(DEFAULT_BASE) < text.index("\nFROM ")
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    named = {name for _, name in stages if name}
    assert stages[0][0] == "${BASE_IMAGE}"
    assert all(source == "${BASE_IMAGE}" or source in named for source, _ in stages), stages


@pytest.mark.parametrize("part", IMAGES)
def test_a_bare_debian_base_gets_debians_python(part: str) -> None:
    text = _dockerfile(part)
    assert re.search(r"if ! command -v python3 .*\n.*\n.*apt-get install -y --no-install-recommends python3 python3-venv", text)
    assert "python3 -m venv /opt/venv" in text, "Debian's Python refuses pip outside a venv (PEP 668)"


@pytest.mark.parametrize("part", IMAGES)
def test_non_root_user(part: str) -> None:
    users = re.findall(r"^USER (\S+)$", _dockerfile(part), re.M)
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize("part, extra", IMAGES.items())
def test_installs_exactly_its_own_extra(part: str, extra: str) -> None:
    installs = re.findall(r"pip install [^\n]*", _dockerfile(part))
    assert installs == [f'pip install ".[{extra}]"'], installs


@pytest.mark.parametrize("part", IMAGES)
def test_copies_only_contracts_and_its_own_package(part: str) -> None:
    copied = re.findall(r"^COPY (?!--from)(\S+)", _dockerfile(part), re.M)
    for other in OTHER_PARTS[part]:
        assert other not in copied, f"{part} image copies {other}"
    assert {"contracts", part} <= set(copied)


def test_dashboard_image_holds_broker_config_for_add_device() -> None:
    assert "COPY broker_config ./broker_config" in _dockerfile("dashboard")


@pytest.mark.parametrize("extra", ["edge", "dashboard"])
def test_tensorflow_stays_out_of_edge_and_dashboard_images(extra: str) -> None:
    assert not [dep for dep in _extras()[extra] if "tensorflow" in dep.lower() or "keras" in dep.lower()]
    text = _dockerfile("edge_node" if extra == "edge" else extra)
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "tensorflow" not in instructions.lower()


@pytest.mark.parametrize("part", ["edge_node", "dashboard"])
def test_long_running_images_have_a_healthcheck(part: str) -> None:
    text = _dockerfile(part)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/usr/local/bin/healthcheck.py\"", text, re.M)
    assert "COPY docker/healthcheck.py /usr/local/bin/healthcheck.py" in text


def test_dockerignore_keeps_secrets_and_state_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", "keys", "secrets", "runs", "**/*.env", "**/*.pem", "**/*.key"} <= ignored
    for needed in ("pyproject.toml", "contracts", "edge_node", "dashboard", "trainer", "broker_config", "docker"):
        assert needed not in ignored
