"""Mosquitto password file entries in its `$7$` PBKDF2-SHA512 format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)

# Mosquitto 2.0's mosquitto_passwd defaults: 12-byte salt, 64-byte digest, 101 iterations.
ITERATIONS = 101
SALT_BYTES = 12
DIGEST_BYTES = 64


def generate_password(nbytes: int = 24) -> str:
    """Return a random URL-safe password."""
    return secrets.token_urlsafe(nbytes)


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """Hash a password into Mosquitto's `$7$iterations$salt$digest` form."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, DIGEST_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a `$7$` hash."""
    try:
        _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
        if kind != "7":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
    except ValueError:
        return False
    actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations), len(expected))
    return hmac.compare_digest(actual, expected)


def read_passwd(path: Path) -> dict[str, str]:
    """Read a password file into username -> hash."""
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            user, _, hashed = line.partition(":")
            entries[user] = hashed
    return entries


def write_passwd(path: Path, entries: dict[str, str]) -> None:
    """Write username -> hash entries atomically, sorted by username."""
    text = "".join(f"{user}:{hashed}\n" for user, hashed in sorted(entries.items()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def set_password(path: Path, username: str, password: str) -> None:
    """Add or replace one user's entry in a password file."""
    entries = read_passwd(path)
    entries[username] = hash_password(password)
    write_passwd(path, entries)
    logger.info("password set for %s in %s", username, path)
