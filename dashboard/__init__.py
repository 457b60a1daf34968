"""Fleet dashboard: the Flask app factory shared by the web app, the API and the CLI."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from contracts.confs import Confs, load_confs
from dashboard.db import Database
from dashboard.state_files import private_dir, sqlite_files, warn_if_loose

logger = logging.getLogger(__name__)

CONFS_ENV = "DASHBOARD_CONFS"
csrf = CSRFProtect()


def load_secret_key(path: Path) -> str:
    """SECRET_KEY env, else the key file, created with a random key (mode 600) on first start."""
    if value := os.environ.get("SECRET_KEY"):
        return value
    if path.is_file():
        key = path.read_text().strip()
        if key:
            return key
    private_dir(path.parent)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    logger.info("created a new secret key in %s", path)
    return key


def database_url(confs: Confs) -> str:
    """DATABASE_URL env overrides confs.json's dashboard.database_url."""
    return os.environ.get("DATABASE_URL") or confs.dashboard.database_url


def _state_paths(app: Flask, db: Database) -> list[Path]:
    """Folders and files holding secrets or results, checked for loose modes at start."""
    paths = [Path(app.config["PACKAGE_DIR"])]
    key_file = Path(app.config["CONFS"].dashboard.secret_key_file)
    if not os.environ.get("SECRET_KEY"):
        paths += [key_file.parent, key_file]
    database = db.engine.url.database if db.dialect == "sqlite" else None
    if database and database != ":memory:":
        paths += [Path(database).parent, *sqlite_files(database)]
    return paths


def create_app(confs: Confs | None = None, **overrides: Any) -> Flask:
    """Build the app: confs, database, secure cookies, login, CSRF, API, package downloads and web pages."""
    confs = confs or load_confs(os.environ.get(CONFS_ENV, "confs.json"))
    app = Flask(__name__)
    app.config["CONFS"] = confs
    app.config.update(
        DATABASE_URL=database_url(confs),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=confs.ota.max_package_bytes + 1024 * 1024,
        PACKAGE_DIR=confs.dashboard.package_dir,
        PUBLIC_URL=confs.dashboard.public_url.rstrip("/"),
        OFFLINE_AFTER_S=confs.dashboard.offline_after_s,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update(overrides)
    secure = not (app.config.get("TESTING") or app.config.get("insecure_cookies"))
    app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["REMEMBER_COOKIE_SECURE"] = secure
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(Path(confs.dashboard.secret_key_file))

    db = app.config.get("DATABASE") or Database(app.config["DATABASE_URL"])
    app.extensions["db"] = db
    private_dir(app.config["PACKAGE_DIR"])
    warn_if_loose(_state_paths(app, db))

    from dashboard import limits

    limits.install(app)

    from dashboard.services.auth import init_login

    init_login(app)
    csrf.init_app(app)

    from dashboard.api import api_blueprint
    from dashboard.packages import packages_blueprint

    app.register_blueprint(api_blueprint)
    csrf.exempt(api_blueprint)
    from dashboard.api.lab_routes import metrics_blueprint

    app.register_blueprint(metrics_blueprint)
    app.register_blueprint(packages_blueprint)

    from dashboard.cli import register_cli

    register_cli(app)

    from dashboard.web import register_web

    register_web(app)
    return app
