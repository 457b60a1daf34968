"""docker/prepare.py: env files that match the broker accounts, mode 600, stable across re-runs, bad input refused."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from deploy.compose_support import ROOT

from broker_config import read_credentials
from broker_config.passwords import verify_password


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "prepare.py"), "--root", str(root), *args],
        capture_output=True, text=True, timeout=120,
    )


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _root(tmp_path: Path) -> Path:
    (tmp_path / "docker").mkdir()
    for confs in (ROOT / "docker").glob("confs*.json"):
        shutil.copy(confs, tmp_path / "docker" / confs.name)
    return tmp_path


def test_env_files_carry_the_broker_passwords_privately(rendered_broker: Path) -> None:
    broker = rendered_broker / "var/docker/broker"
    credentials = read_credentials(broker)
    for name, user in (("dashboard", "dashboard"), ("edge-node-1", "edge-node-1"), ("edge-node-2", "edge-node-2")):
        env_file = rendered_broker / "docker" / f"{name}.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert _env(env_file)["MQTT_PASSWORD"] == credentials[user]
        hashes = dict(line.split(":", 1) for line in (broker / "passwd").read_text().splitlines())
        assert verify_password(credentials[user], hashes[user])
    assert len(_env(rendered_broker / "docker" / "dashboard.env")["SECRET_KEY"]) == 64
    assert (rendered_broker / "runs").is_dir() and (rendered_broker / "keys").is_dir()


def test_rerun_keeps_passwords_and_key_and_sets_a_token(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert _run(root).returncode == 0
    before = {p.name: _env(p) for p in (root / "docker").glob("*.env")}
    result = _run(root, "--device-token", "edge-node-2=tok_abcdefgh-123")
    assert result.returncode == 0, result.stderr
    after = {p.name: _env(p) for p in (root / "docker").glob("*.env")}
    assert after["dashboard.env"] == before["dashboard.env"]
    assert after["edge-node-2.env"] == {**before["edge-node-2.env"], "EDGE_TOKEN": "tok_abcdefgh-123"}
    assert after["edge-node-1.env"]["EDGE_TOKEN"] == ""


def test_bad_tokens_are_refused_without_traceback(tmp_path: Path) -> None:
    root = _root(tmp_path)
    for bad in ("edge-node-9=abcdefgh12", "edge-node-1=short", "edge-node-1=has$dollar123", "no-equals-sign"):
        result = _run(root, "--device-token", bad)
        assert result.returncode == 1 and "invalid --device-token" in result.stderr, bad
        assert "Traceback" not in result.stderr
    assert not list((root / "docker").glob("*.env"))


def test_a_node_confs_with_the_wrong_device_id_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path)
    confs = json.loads((root / "docker" / "confs.edge-node-2.json").read_text())
    confs["edge_node"]["device_id"] = "edge-node-1"
    (root / "docker" / "confs.edge-node-2.json").write_text(json.dumps(confs))
    result = _run(root)
    assert result.returncode == 1 and "edge_node.device_id" in result.stderr and "Traceback" not in result.stderr


def test_invalid_confs_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "docker" / "confs.json").write_text('{"mqtt": {"port": "x"}}')
    result = _run(root)
    assert result.returncode == 1 and "confs.json" in result.stderr and "Traceback" not in result.stderr
