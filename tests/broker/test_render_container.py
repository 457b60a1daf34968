"""Rendering for a container: the conf names its files under the mount point, not the host directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from broker_config import render

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/mosquitto/config"


def _directives(conf: str) -> dict[str, str]:
    """First value of each `key value` line, comments skipped."""
    found: dict[str, str] = {}
    for line in conf.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, value)
    return found


def test_path_prefix_replaces_the_host_directory_in_every_file_path(tmp_path: Path) -> None:
    paths = render(tmp_path / "gen", 11883, 18883, path_prefix=PREFIX)
    conf = paths.conf.read_text()
    values = _directives(conf)
    assert values["password_file"] == f"{PREFIX}/passwd"
    assert values["acl_file"] == f"{PREFIX}/acl"
    assert values["pid_file"] == f"{PREFIX}/run/mosquitto.pid"
    assert values["persistence_location"] == f"{PREFIX}/data/"
    assert values["cafile"] == f"{PREFIX}/tls/ca.crt"
    assert values["certfile"] == f"{PREFIX}/tls/server.crt"
    assert values["keyfile"] == f"{PREFIX}/tls/server.key"
    assert str(tmp_path) not in conf
    # The files themselves are still written into the host directory.
    assert paths.passwd.is_file() and paths.tls.server_key.is_file()


def test_without_prefix_the_conf_names_the_host_directory(tmp_path: Path) -> None:
    conf = render(tmp_path, 11883, 18883).conf.read_text()
    assert _directives(conf)["password_file"] == str(tmp_path / "passwd")


@pytest.mark.parametrize(
    "prefix",
    ["relative/dir", "/with space", "/a\nlistener 1 0.0.0.0", "/a#b", "/a/../etc", ""],
    ids=["relative", "space", "newline-injection", "hash", "dotdot", "empty"],
)
def test_unsafe_prefixes_are_refused_before_anything_is_written(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid path prefix"):
        render(tmp_path / "gen", 11883, 18883, path_prefix=prefix)
    assert not (tmp_path / "gen").exists()


def test_cli_path_prefix(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "broker_config", "render", "--out", str(tmp_path), "--path-prefix", PREFIX],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert re.search(rf"^keyfile {PREFIX}/tls/server.key$", (tmp_path / "mosquitto.conf").read_text(), re.M)
    bad = subprocess.run(
        [sys.executable, "-m", "broker_config", "render", "--out", str(tmp_path / "x"), "--path-prefix", "a b"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 1 and "invalid path prefix" in bad.stderr and "Traceback" not in bad.stderr
