"""Admins' web app: server-rendered pages, forms and live streams."""
from __future__ import annotations

from flask import Flask


def register_web(app: Flask) -> None:
    """Register the web blueprints, security headers and template helpers on the app."""
