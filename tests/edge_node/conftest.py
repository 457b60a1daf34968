"""Fixtures for edge node tests: a signing key, the tiny model package unpacked, a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.model_package import Manifest, public_key_text, unpack_package
from support.tiny_package import make_tiny_package


@dataclass(frozen=True)
class TinyPackage:
    """A built tiny package, the key that signed it, and its unpacked copy."""

    archive: Path
    unpacked: Path
    manifest: Manifest
    private_key: Ed25519PrivateKey

    @property
    def public_key_text(self) -> str:
        """The signer's key as confs.json lists it."""
        return public_key_text(self.private_key)


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory) -> TinyPackage:
    """The tiny signed package, built once per run."""
    root = tmp_path_factory.mktemp("tiny-package")
    key = Ed25519PrivateKey.generate()
    archive = make_tiny_package(root / "dist", key, "1.0.0")
    manifest = unpack_package(archive, root / "unpacked", [key.public_key()])
    return TinyPackage(archive, root / "unpacked", manifest, key)


@pytest.fixture(scope="session")
def tiny_package_v2(tmp_path_factory: pytest.TempPathFactory) -> TinyPackage:
    """A format-2 tiny package: uint8 input, OOD score, IR + ONNX, and a .tflite when TensorFlow can write one."""
    from support.tiny_formats import TfliteUnavailable

    root = tmp_path_factory.mktemp("tiny-package-v2")
    key = Ed25519PrivateKey.generate()
    try:
        archive = make_tiny_package(root / "dist", key, "2.0.0", fmt=2, tflite=True)
    except TfliteUnavailable:
        archive = make_tiny_package(root / "dist", key, "2.0.0", fmt=2)
    manifest = unpack_package(archive, root / "unpacked", [key.public_key()])
    return TinyPackage(archive, root / "unpacked", manifest, key)
