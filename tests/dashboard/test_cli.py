"""CLI: init-db, create-admin (generated password), create-token, add-device (broker account), register-model."""

from __future__ import annotations

import json
import re
import tarfile

from sqlalchemy import select

from broker_config.manage import GeneratedPaths, add_device, read_credentials
from broker_config.registry import load_registry
from dashboard.models import Device, ModelRelease
from dashboard.services import tokens, users
from support.tiny_package import make_tiny_package


def test_init_db_is_repeatable(runner) -> None:
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0 and "database ready" in result.output


def test_create_admin_prints_a_working_generated_password(runner, db) -> None:
    result = runner.invoke(args=["create-admin", "root-admin"])
    assert result.exit_code == 0, result.output
    password = re.search(r"password \(shown once\): (\S+)", result.output).group(1)
    with db.session() as session:
        assert users.authenticate(session, "root-admin", password).user.role == "admin"
    again = runner.invoke(args=["create-admin", "root-admin"])
    assert again.exit_code != 0 and "already exists" in again.output and "Traceback" not in again.output


def test_create_admin_refuses_hostile_names(runner) -> None:
    result = runner.invoke(args=["create-admin", "x'; DROP TABLE users;--"])
    assert result.exit_code != 0 and "username" in result.output


def test_create_token_for_a_user(runner, db, admin_user) -> None:
    result = runner.invoke(args=["create-token", "alice", "--name", "ci"])
    assert result.exit_code == 0
    with db.session() as session:
        assert tokens.user_for_api_token(session, result.output.strip()).username == "alice"
    missing = runner.invoke(args=["create-token", "nobody"])
    assert missing.exit_code != 0 and "no user" in missing.output


def test_add_device_creates_broker_account_acl_token_and_snippet(runner, db, tmp_path) -> None:
    broker_dir = tmp_path / "broker"
    result = runner.invoke(args=["add-device", "node-7", "--zone", "Lab2", "--broker-dir", str(broker_dir)])
    assert result.exit_code == 0, result.output
    snippet = json.loads(result.output[result.output.index("{"): result.output.rindex("}") + 1])
    assert snippet["edge_node"]["device_id"] == "node-7" and snippet["identity"]["zone"] == "Lab2"
    password = re.search(r"MQTT password:\s+(\S+)", result.output).group(1)
    token = re.search(r"download token:\s+(\S+)", result.output).group(1)
    assert read_credentials(broker_dir)["node-7"] == password
    assert "node-7" in load_registry(GeneratedPaths(broker_dir).registry).devices
    assert "user node-7" in GeneratedPaths(broker_dir).acl.read_text()
    with db.session() as session:
        assert session.get(Device, "node-7").zone == "Lab2"
        assert tokens.device_for_token(session, token) == "node-7"
    bad = runner.invoke(args=["add-device", "../evil", "--zone", "Lab2", "--broker-dir", str(broker_dir)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_add_device_adopts_a_node_the_broker_knows_without_touching_its_registry(runner, db, tmp_path) -> None:
    broker_dir = tmp_path / "broker"
    password = add_device(broker_dir, "node-8", "Site", "Lab3")
    before = {path.name: path.read_bytes() for path in broker_dir.iterdir() if path.is_file()}
    result = runner.invoke(args=["add-device", "node-8", "--broker-dir", str(broker_dir)])
    assert result.exit_code == 0, result.output
    assert password not in result.output and "already had this account" in result.output
    assert {path.name: path.read_bytes() for path in broker_dir.iterdir() if path.is_file()} == before
    token = re.search(r"download token:\s+(\S+)", result.output).group(1)
    with db.session() as session:
        assert (session.get(Device, "node-8").location, session.get(Device, "node-8").zone) == ("Site", "Lab3")
        assert tokens.device_for_token(session, token) == "node-8"
    moved = runner.invoke(args=["add-device", "node-8", "--zone", "Lab4", "--broker-dir", str(broker_dir)])
    assert moved.exit_code != 0 and "Site/Lab3" in moved.output
    unknown = runner.invoke(args=["add-device", "node-9", "--broker-dir", str(broker_dir)])
    assert unknown.exit_code != 0 and "--zone" in unknown.output and "Traceback" not in unknown.output


def test_register_model_verifies_and_stores(runner, db, signing_key, tmp_path) -> None:
    package = make_tiny_package(tmp_path / "pkg", signing_key, "1.4.0")
    result = runner.invoke(args=["register-model", str(package)])
    assert result.exit_code == 0, result.output
    with db.session() as session:
        release = session.scalar(select(ModelRelease))
        assert release.version == "1.4.0" and release.classes == ["Benign", "Early", "Pre", "Pro"]
    again = runner.invoke(args=["register-model", str(package)])
    assert again.exit_code != 0 and "already registered" in again.output


def test_register_model_refuses_untrusted_and_hostile_packages(runner, tmp_path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    untrusted = make_tiny_package(tmp_path / "u", Ed25519PrivateKey.generate(), "1.0.0")
    result = runner.invoke(args=["register-model", str(untrusted)])
    assert result.exit_code != 0 and "signature" in result.output
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "x.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as archive:
        archive.add(payload, arcname="../../escape.txt")
    result = runner.invoke(args=["register-model", str(evil)])
    assert result.exit_code != 0 and "refused" in result.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    result = runner.invoke(args=["register-model", str(junk)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not (tmp_path.parent / "escape.txt").exists()
