"""Development signing key: generated on first use into a git-ignored folder, trusted by a command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from contracts.model_package import (
    PackageError,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    save_private_key,
)
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the signing key, creating it (mode 600) when it does not exist yet."""
    if path.exists():
        try:
            return load_private_key(path)
        except (PackageError, ValueError, TypeError) as exc:
            raise TrainerError(f"cannot read signing key {path}: {exc}") from None
    key = generate_private_key()
    save_private_key(key, path)
    log.warning("generated a new development signing key at %s (trust it with: python -m trainer keys --trust)", path)
    return key


def trust_key(confs_path: Path, key: Ed25519PrivateKey) -> bool:
    """Add the key's public half to confs.json's ota.trusted_public_keys; False when already there."""
    try:
        data = json.loads(confs_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainerError(f"cannot read {confs_path}: {exc}") from None
    ota = data.setdefault("ota", {})
    trusted: list[str] = ota.setdefault("trusted_public_keys", [])
    text = public_key_text(key)
    if text in trusted:
        return False
    trusted.append(text)
    confs_path.write_text(json.dumps(data, indent=2) + "\n")
    return True


def trusted_keys(texts: list[str]) -> list[Ed25519PublicKey]:
    """Parse confs.json's trusted key list."""
    try:
        return [parse_public_key(t) for t in texts]
    except PackageError as exc:
        raise TrainerError(f"bad trusted public key in confs.json: {exc}") from None
