"""Flask-Login wiring, the `role_required` decorator and API token authentication."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, abort, g, jsonify, request
from flask_login import LoginManager, current_user

from dashboard.db import get_db
from dashboard.models import User
from dashboard.services import tokens, users

F = TypeVar("F", bound=Callable[..., Any])
LOGIN_VIEW = "auth.login"


def init_login(app: Flask) -> LoginManager:
    """Attach a LoginManager that loads users from the database; pages redirect to the login view."""
    manager = LoginManager()
    manager.login_view = LOGIN_VIEW
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(session_id: str) -> User | None:
        # Checked on every request: a session saved before logout, a password or a role change is refused.
        with get_db().session(readonly=True) as session:
            return users.load_session_user(session, session_id)

    manager.init_app(app)
    return manager


def role_required(role: str) -> Callable[[F], F]:
    """Allow only logged-in users with role (admin passes every check); others get 401/403."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                from flask import current_app

                return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
            if role != current_user.role and current_user.role != "admin":
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def api_auth(role: str = "viewer") -> Callable[[F], F]:
    """Require `Authorization: Bearer api_...`; the token's user is in g.api_user. Sessions do not count."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = tokens.bearer_token(request.headers.get("Authorization"))
            with get_db().session() as session:
                user = tokens.user_for_api_token(session, token)
            if user is None:
                response = jsonify(error="unauthorized", message="a valid API bearer token is required")
                response.status_code = 401
                response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
            if role == "admin" and user.role != "admin":
                return jsonify(error="forbidden", message="this action needs an admin token"), 403
            if role == "reviewer" and user.role not in ("reviewer", "admin"):
                return jsonify(error="forbidden", message="this action needs a reviewer token"), 403
            g.api_user = user
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
