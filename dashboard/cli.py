"""`flask --app dashboard init-db|create-admin|add-device|register-model|create-token|backup|restore`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from dashboard.db import get_db
from dashboard.migrations import upgrade_database
from dashboard.services import audit, devices, releases, tokens, users

BROKER_DIR_ENV = "BROKER_CONFIG_DIR"


def _fail(message: str) -> NoReturn:
    """Exit non-zero with a clear message and no traceback."""
    raise click.ClickException(message)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    db = get_db()
    upgrade_database(db.engine)
    click.echo(f"database ready ({db.engine.url.render_as_string(hide_password=True)})")


@click.command("create-admin")
@with_appcontext
@click.argument("username", default="admin")
@click.option("--role", type=click.Choice(users.ROLES), default="admin", show_default=True)
def create_admin_command(username: str, role: str) -> None:
    """Create a user with a generated password, printed once."""
    try:
        with get_db().session() as session:
            user, password = users.create_user(session, username, role)
            audit.record(session, "cli", "user.create", username, {"role": role})
    except users.UserError as exc:
        _fail(str(exc))
    click.echo(f"created {role} {user.username!r}; password (shown once): {password}")


@click.command("create-token")
@with_appcontext
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="label of the token")
def create_token_command(username: str, name: str) -> None:
    """Create an API bearer token for an existing user, printed once."""
    with get_db().session() as session:
        user = users.get_user_by_name(session, username)
        if user is None:
            _fail(f"no user named {username!r}")
        token = tokens.create_api_token(session, user, name)
        audit.record(session, "cli", "token.create", username, {"name": name})
    click.echo(token)


def _default_broker_dir() -> Path:
    from broker_config.manage import DEFAULT_OUT

    return Path(os.environ.get(BROKER_DIR_ENV) or DEFAULT_OUT)


@click.command("add-device")
@with_appcontext
@click.argument("device_id")
@click.option("--zone", default=None, help="zone of the node (topic segment); taken from the broker's registry if it knows the node")
@click.option("--location", default=None, help="location (default: the broker's registry, else confs identity.location)")
@click.option("--broker-dir", type=click.Path(path_type=Path), default=None,
              help=f"generated broker config dir (default ${BROKER_DIR_ENV} or broker_config/generated)")
@click.option("--reload-broker", is_flag=True, help="SIGHUP the running broker so the account works at once")
def add_device_command(device_id: str, zone: str | None, location: str | None, broker_dir: Path | None,
                       reload_broker: bool) -> None:
    """Register a node: its dashboard record and download token, and its broker account unless the broker has it.

    The broker's registry.json is the one list of nodes: a node already in it keeps its place and account
    (the registry may be read-only, as in the dashboard container); a new one is added to it first.
    """
    from broker_config.manage import GeneratedPaths, add_device, reload_broker as sighup
    from broker_config.registry import InvalidName, load_registry

    confs = current_app.config["CONFS"]
    broker_dir = broker_dir or _default_broker_dir()
    try:
        known = load_registry(GeneratedPaths(broker_dir).registry).devices.get(device_id)
    except (InvalidName, KeyError, ValueError, OSError) as exc:
        _fail(f"cannot read the broker's device registry in {broker_dir}: {exc}")
    if known is not None:
        if (zone or known.zone, location or known.location) != (known.zone, known.location):
            _fail(f"device {device_id!r} is registered on the broker in {known.location}/{known.zone}")
        location, zone = known.location, known.zone
    elif zone is None:
        _fail(f"the broker does not know {device_id!r} yet: give --zone to register it")
    location = location or confs.identity.location
    password = None
    try:
        with get_db().session() as session:
            device = devices.register_device(session, device_id, location, zone)
            token = tokens.create_device_token(session, device)
            if known is None:
                password = add_device(broker_dir, device_id, location, zone)
            audit.record(session, "cli", "device.add", device_id, {"location": location, "zone": zone})
    except (devices.DeviceError, InvalidName) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot add {device_id!r} to the broker's registry ({exc}): register it there first "
              "(`python -m broker_config add-device` or docker/prepare.py)")
    if reload_broker and password is not None:
        try:
            sighup(GeneratedPaths(broker_dir).pid_file)
        except (RuntimeError, OSError) as exc:
            click.echo(f"warning: broker not reloaded: {exc}", err=True)
    snippet = {
        "mqtt": {"host": confs.mqtt.host, "port": confs.mqtt.port, "tls": confs.mqtt.tls, "ca_file": confs.mqtt.ca_file,
                 "password_file": f"secrets/{device_id}.mqtt_password"},
        "identity": {"location": location, "zone": zone},
        "edge_node": {"device_id": device_id, "token_file": f"secrets/{device_id}.download_token"},
    }
    click.echo(f"device {device_id!r} registered in {location}/{zone}. confs.json snippet for the node:")
    click.echo(json.dumps(snippet, indent=2))
    click.echo("secrets, shown once (store them in the files named above, mode 600):")
    if password is None:
        click.echo("  MQTT password:  (the broker already had this account: see credentials.json where it was made)")
    else:
        click.echo(f"  MQTT password:  {password}")
    click.echo(f"  download token: {token}")


@click.command("register-model")
@with_appcontext
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def register_model_command(package: Path) -> None:
    """Verify a signed model package against the trusted keys and register it as a release."""
    confs = current_app.config["CONFS"]
    try:
        with get_db().session() as session:
            release = releases.register_package(session, package, current_app.config["PACKAGE_DIR"],
                                                confs.ota.trusted_public_keys, confs.ota.max_package_bytes, "cli")
            click.echo(f"registered {release.name} {release.version} as release {release.id} (sha256 {release.sha256})")
    except releases.ReleaseError as exc:
        _fail(str(exc))


@click.command("export-reviewed")
@with_appcontext
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def export_reviewed_command(out_dir: Path) -> None:
    """Write reviewed labels as a folder-per-class dataset with manifest.json (images fetched from the nodes)."""
    from dashboard.services.node_images import NodeImages
    from dashboard.services.review_export import export_reviewed

    images = NodeImages.from_confs(current_app.config["CONFS"].dashboard.review)
    with get_db().session(readonly=True) as session:
        report = export_reviewed(session, images, out_dir)
    click.echo(json.dumps({"written": len(report.written), "missing": len(report.missing), "out": str(out_dir)}))


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Back up the database to PATH while the dashboard and ingest run (SQLite online backup, or pg_dump)."""
    from dashboard.backup import BackupError, backup, table_digests

    db = get_db()
    try:
        backup(db.url, path)
    except (BackupError, OSError) as exc:
        _fail(str(exc))
    rows = sum(count for count, _ in table_digests(db.engine).values())
    click.echo(f"backed up {db.engine.url.render_as_string(hide_password=True)} to {path} "
               f"({path.stat().st_size} bytes; the database now holds {rows} rows)")


@click.command("restore")
@with_appcontext
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="replace a database that already holds tables (stop the ingest first)")
def restore_command(path: Path, force: bool) -> None:
    """Restore a backup made by `backup` into the configured database (a fresh one unless --force)."""
    from dashboard.backup import BackupError, restore, table_digests

    db = get_db()
    try:
        restore(db.url, path, db.engine, force=force)
    except (BackupError, OSError) as exc:
        _fail(str(exc))
    digests = table_digests(db.engine)
    with get_db().session() as session:
        audit.record(session, "cli", "database.restore", str(path), {"force": force})
    click.echo(f"restored {path}: {len(digests)} tables, {sum(c for c, _ in digests.values())} rows")


def register_cli(app: Flask) -> None:
    """Attach the commands to the app's CLI group."""
    for command in (init_db_command, create_admin_command, create_token_command, add_device_command,
                    register_model_command, export_reviewed_command, backup_command, restore_command):
        app.cli.add_command(command)
