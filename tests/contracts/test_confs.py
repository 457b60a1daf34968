"""confs.json validates; bad files fail `check` with a message naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.confs import ConfsError, load_confs, parse_confs, read_secret

ROOT = Path(__file__).resolve().parents[2]


def committed() -> dict:
    return json.loads((ROOT / "confs.json").read_text())


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contracts.confs", "check", str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_committed_confs_is_valid() -> None:
    confs = load_confs(ROOT / "confs.json")
    assert confs.identity.location
    assert run_check(ROOT / "confs.json").returncode == 0


def keys_of(node: object, prefix: str = "") -> list[str]:
    """Every dotted key in a JSON tree."""
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        found.append(prefix + key)
        found.extend(keys_of(value, prefix + key + "."))
    return found


def test_committed_confs_holds_no_secrets() -> None:
    secret_words = ("password", "secret", "token", "private")
    for key in keys_of(committed()):
        leaf = key.rsplit(".", 1)[-1]
        if any(word in leaf for word in secret_words):
            assert leaf.endswith("_file"), f"{key} looks like a secret in the committed confs.json"


@pytest.mark.parametrize(
    ("change", "named_key", "reason"),
    [
        (lambda c: c.pop("mqtt"), "mqtt", "Field required"),
        (lambda c: c["mqtt"].update(port="eighteen"), "mqtt.port", "valid integer"),
        (lambda c: c["mqtt"].update(port=70000), "mqtt.port", "less than or equal"),
        (lambda c: c["edge_node"].update(colour="blue"), "edge_node.colour", "Extra inputs"),
        (lambda c: c.update(extras={}), "extras", "Extra inputs"),
        (lambda c: c["identity"].update(location="a/b"), "identity.location", "pattern"),
        (lambda c: c["trainer"].update(model="resnet"), "trainer.model", "Input should be"),
        (lambda c: c["trainer"]["split"].update(test_fraction=0.9), "trainer.split.test_fraction", "less than"),
        (lambda c: c["ota"].update(trusted_public_keys=["rsa:abc"]), "ota.trusted_public_keys", "ed25519"),
        (lambda c: c["edge_node"]["inputs"].update(http="yes please"), "edge_node.inputs.http", "boolean"),
        (lambda c: c["edge_node"].update(openvino={"rewrite_pools": "sometimes"}), "edge_node.openvino.rewrite_pools",
         "boolean"),
        (lambda c: c["edge_node"].update(openvino={"num_threads": 0}), "edge_node.openvino.num_threads", "greater than"),
        (lambda c: c["edge_node"].update(openvino={"cpu_pinning": "cores 0-1"}), "edge_node.openvino.cpu_pinning",
         "boolean"),
    ],
)
def test_bad_confs_fail_check_naming_the_key(tmp_path: Path, change, named_key: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    confs = committed()
    change(confs)
    path = tmp_path / "confs.json"
    path.write_text(json.dumps(confs))
    result = run_check(path)
    assert result.returncode == 1
    assert named_key in result.stderr and reason in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", ["", "{", "[]", "\x00\x01"])
def test_unparseable_confs_fail_check_clearly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "confs.json"
    path.write_text(content)
    result = run_check(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_missing_file_and_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    assert "cannot read" in run_check(tmp_path / "nope.json").stderr
    usage = subprocess.run([sys.executable, "-m", "contracts.confs", "frobnicate"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_parse_confs_raises_confs_error() -> None:
    with pytest.raises(ConfsError, match="mqtt"):
        parse_confs("{}")


def test_secrets_come_from_environment_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    monkeypatch.delenv("TEST_SECRET", raising=False)
    assert read_secret("TEST_SECRET", str(secret_file)) == "from-file"
    monkeypatch.setenv("TEST_SECRET", "from-env")
    assert read_secret("TEST_SECRET", str(secret_file)) == "from-env"
    monkeypatch.delenv("TEST_SECRET")
    assert read_secret("TEST_SECRET", None) is None
