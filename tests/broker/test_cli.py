"""The `python -m broker_config` command line: clear errors, files with safe permissions."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "broker_config", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "device_id",
    ["a/b", "dev+", "dev#", "", "x" * 65, "dev A", "$SYS", "dev:1"],
    ids=["slash", "plus", "hash", "empty", "too-long", "space", "dollar", "colon"],
)
def test_add_device_rejects_bad_ids_without_traceback(tmp_path: Path, device_id: str) -> None:
    result = _cli("add-device", device_id, "--location", "Hospital", "--zone", "Lab1", "--out", tmp_path)
    assert result.returncode != 0
    assert "invalid device id" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "registry.json").exists()


@pytest.mark.parametrize("option", ["--location", "--zone"])
def test_add_device_rejects_bad_location_or_zone(tmp_path: Path, option: str) -> None:
    args = {"--location": "Hospital", "--zone": "Lab1", option: "Lab/1"}
    result = _cli("add-device", "devA", *[x for kv in args.items() for x in kv], "--out", tmp_path)
    assert result.returncode != 0 and option.strip("-") in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("port", ["0", "70000", "abc"])
def test_render_rejects_bad_ports(tmp_path: Path, port: str) -> None:
    result = _cli("render", "--out", tmp_path, "--plain-port", port)
    assert result.returncode != 0 and "invalid port" in result.stderr and "Traceback" not in result.stderr


def test_render_rejects_equal_ports(tmp_path: Path) -> None:
    result = _cli("render", "--out", tmp_path, "--plain-port", "18000", "--tls-port", "18000")
    assert result.returncode == 1 and "must differ" in result.stderr and "Traceback" not in result.stderr


def test_adding_an_existing_device_needs_replace(tmp_path: Path) -> None:
    assert _cli("add-device", "devA", "--location", "Hospital", "--zone", "Lab1", "--out", tmp_path).returncode == 0
    again = _cli("add-device", "devA", "--location", "Hospital", "--zone", "Lab2", "--out", tmp_path)
    assert again.returncode == 1 and "already registered" in again.stderr
    replaced = _cli("add-device", "devA", "--location", "Hospital", "--zone", "Lab2", "--replace", "--out", tmp_path)
    assert replaced.returncode == 0
    assert "Hospital/Devices/Lab2/devA/Sensors" in (tmp_path / "acl").read_text()


def test_reload_without_a_running_broker_fails_cleanly(tmp_path: Path) -> None:
    result = _cli("reload", "--out", tmp_path)
    assert result.returncode == 1 and "cannot read a pid" in result.stderr and "Traceback" not in result.stderr


def test_cli_writes_a_complete_config_with_private_secrets(tmp_path: Path) -> None:
    assert _cli("render", "--out", tmp_path, "--plain-port", "18001", "--tls-port", "18002").returncode == 0
    device = _cli("add-device", "devA", "--location", "Hospital", "--zone", "Lab1", "--out", tmp_path)
    dashboard = _cli("add-dashboard", "--out", tmp_path)
    assert device.returncode == 0 and dashboard.returncode == 0
    creds = json.loads((tmp_path / "credentials.json").read_text())
    assert creds["devA"] in device.stdout and creds["dashboard"] in dashboard.stdout
    for secret in ("credentials.json", "tls/ca.key"):
        assert stat.S_IMODE((tmp_path / secret).stat().st_mode) & 0o077 == 0, secret
    for private in ("passwd", "tls/server.key"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) & 0o007 == 0, private
    passwd = (tmp_path / "passwd").read_text()
    # devA, the dashboard and its ingest worker accounts (dashboard.ingest-2 ... -16), all hashed.
    assert creds["devA"] not in passwd and passwd.count("$7$") == 2 + 15 and "dashboard.ingest-16:$7$" in passwd
    conf = (tmp_path / "mosquitto.conf").read_text()
    for line in ("listener 18001 127.0.0.1", "listener 18002", "allow_anonymous false", "per_listener_settings false"):
        assert line in conf.splitlines()
    assert "Hospital/Devices/+/+/#" in (tmp_path / "acl").read_text()


def test_tls_command_keeps_existing_material_unless_forced(tmp_path: Path) -> None:
    assert _cli("tls", "--out", tmp_path).returncode == 0
    first = (tmp_path / "tls" / "ca.crt").read_bytes()
    assert _cli("tls", "--out", tmp_path).returncode == 0
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == first
    assert _cli("tls", "--out", tmp_path, "--force").returncode == 0
    assert (tmp_path / "tls" / "ca.crt").read_bytes() != first
