"""The committed deployment files hold no secrets: passwords and keys live in git-ignored env files."""

from __future__ import annotations

import re
import subprocess

import pytest
from deploy.compose_support import ROOT

SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # KEY=value or KEY: value lines, as in env files and compose `environment:`.
    re.compile(r"(?m)^\s*-?\s*[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*(=|:\s+)['\"]?[A-Za-z0-9+/_.~-]{8,}"),
    # A quoted literal assigned to anything named like a secret.
    re.compile(r"(?i)(password|secret|token)(?!\w*_file)\w*['\"]?\s*[:=]\s*['\"][A-Za-z0-9+/_.~-]{8,}['\"]"),
    re.compile(r"\$7\$\d+\$"),  # a Mosquitto password hash
]


def _deployment_files() -> list[str]:
    """docker-compose.yml, .dockerignore and everything under docker/ that git would commit."""
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "docker", "docker-compose.yml", ".dockerignore"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return result.stdout.split()


def test_patterns_catch_a_planted_secret() -> None:
    for planted in ("MQTT_PASSWORD=Zx9-kq2LmPw0vB7y\n", "      SECRET_KEY: 3f9a0c1d2e4b5a6c\n", 'token = "Zx9-kq2LmPw0vB7y"'):
        assert any(p.search(planted) for p in SECRET_PATTERNS), planted
    assert not any(p.search("token = value.partition('=')") for p in SECRET_PATTERNS)


def test_no_committable_deployment_file_holds_a_secret() -> None:
    files = _deployment_files()
    assert "docker-compose.yml" in files and "docker/example.env" in files
    for name in files:
        text = (ROOT / name).read_text(errors="replace")
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{name} matches {pattern.pattern}"


def test_only_the_example_env_file_is_committable() -> None:
    assert [name for name in _deployment_files() if name.endswith(".env")] == ["docker/example.env"]


def test_example_env_leaves_every_value_empty() -> None:
    for line in (ROOT / "docker" / "example.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and value == "", f"example.env sets {key}"
