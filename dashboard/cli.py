"""`flask --app dashboard init-db|create-admin|add-device|register-model|create-token`."""

from __future__ import annotations

import click
from flask import Flask

from dashboard.db import get_db
from dashboard.migrations import upgrade_database
from dashboard.services import audit, tokens, users


def _fail(message: str) -> None:
    """Exit non-zero with a clear message and no traceback."""
    raise click.ClickException(message)


@click.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    db = get_db()
    upgrade_database(db.engine)
    click.echo(f"database ready ({db.engine.url.render_as_string(hide_password=True)})")


@click.command("create-admin")
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


def register_cli(app: Flask) -> None:
    """Attach the commands to the app's CLI group."""
    for command in (init_db_command, create_admin_command, create_token_command):
        app.cli.add_command(command)
