"""The dashboard's database (with its -wal and -shm), secret key and packages are private to its user."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from contracts.model_package import public_key_text
from dashboard import create_app
from dashboard.migrations import upgrade_database
from dashboard.services import releases, users
from support.tiny_package import make_tiny_package
from tests.dashboard.conftest import make_confs


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_is_created_0700_and_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    old_umask = os.umask(0o022)  # the usual umask, which gave 0644 before
    try:
        key = Ed25519PrivateKey.generate()
        state = tmp_path / "var" / "dashboard"
        confs = make_confs(state, [public_key_text(key)])
        app = create_app(confs)
        db = app.extensions["db"]
        upgrade_database(db.engine)
        with db.session() as session:
            users.create_user(session, "alice", "admin")
            package = make_tiny_package(tmp_path / "src", key, "1.0.0")
            releases.register_package(session, package, app.config["PACKAGE_DIR"], confs.ota.trusted_public_keys,
                                      confs.ota.max_package_bytes, "test")
        with db.session(readonly=True) as session:  # an open connection keeps the -wal and -shm files in place
            session.execute(text("SELECT 1")).all()
            files = [state / "dashboard.db", state / "dashboard.db-wal", state / "dashboard.db-shm",
                     state / "secret_key", *(state / "packages").rglob("*.tar.gz")]
            modes = {p.name: _mode(p) for p in files}
        folders = {p: _mode(p) for p in (tmp_path / "var", state, state / "packages", *(state / "packages").iterdir())}
        db.dispose()
    finally:
        os.umask(old_umask)
    assert all(mode == 0o600 for mode in modes.values()), modes
    assert len(modes) == 5
    assert all(mode == 0o700 for mode in folders.values()), folders


def test_loose_state_is_warned_about_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    confs = make_confs(tmp_path / "state")
    create_app(confs).extensions["db"].dispose()
    os.chmod(tmp_path / "state" / "dashboard.db", 0o644)
    os.chmod(tmp_path / "state", 0o755)
    with caplog.at_level(logging.WARNING, logger="dashboard.state_files"):
        create_app(confs).extensions["db"].dispose()
    warned = caplog.text
    assert "dashboard.db is 0644" in warned and "state is 0755" in warned
