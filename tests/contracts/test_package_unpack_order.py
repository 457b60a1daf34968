"""A package's signature is checked before anything is unpacked, and only what the signed manifest lists is."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from contracts.model_package import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    PackageError,
    PackageLimits,
    _unpack_into,
    generate_private_key,
    parse_public_key,
    public_key_text,
)
from support.tiny_package import make_tiny_package

BOMB_BYTES = 40 * 1024 * 1024


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def _archive(path: Path, files: dict[str, bytes], bomb: str | None = None) -> Path:
    """A gzip tar of files, plus a member of BOMB_BYTES zeros (a few dozen KB compressed) named bomb."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if bomb:
            info = tarfile.TarInfo(bomb)
            info.size = BOMB_BYTES
            archive.addfile(info, io.BytesIO(bytes(BOMB_BYTES)))
    return path


def _written(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], str]:
    key = generate_private_key()
    package = make_tiny_package(tmp_path_factory.mktemp("pkg"), key, "1.0.0")
    return _members(package), public_key_text(key)


@pytest.mark.parametrize("signature", [None, b"", base64.b64encode(bytes(64))])
def test_unsigned_or_mis_signed_upload_writes_nothing(signed: tuple[dict[str, bytes], str], tmp_path: Path,
                                                      signature: bytes | None) -> None:
    files, key = signed
    files = {n: d for n, d in files.items() if n != SIGNATURE_NAME}
    if signature is not None:
        files[SIGNATURE_NAME] = signature
    bomb = _archive(tmp_path / "bomb.tar.gz", files, bomb="model/extra.bin")
    assert bomb.stat().st_size < 1024 * 1024
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(PackageError):
        _unpack_into(bomb, dest, [parse_public_key(key)], PackageLimits())
    assert _written(dest) == 0


def test_signed_manifest_with_an_unlisted_member_writes_nothing(signed: tuple[dict[str, bytes], str], tmp_path: Path) -> None:
    files, key = signed
    bomb = _archive(tmp_path / "extra.tar.gz", files, bomb="unlisted.bin")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(PackageError, match="differ from the manifest"):
        _unpack_into(bomb, dest, [parse_public_key(key)], PackageLimits())
    assert _written(dest) == 0


def test_a_member_larger_than_its_signed_size_is_refused_before_unpacking(signed: tuple[dict[str, bytes], str],
                                                                          tmp_path: Path) -> None:
    files, key = signed
    name = next(n for n in files if n not in (MANIFEST_NAME, SIGNATURE_NAME))
    files = {n: d for n, d in files.items() if n != name}
    bomb = _archive(tmp_path / "swap.tar.gz", files, bomb=name)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(PackageError, match="size"):
        _unpack_into(bomb, dest, [parse_public_key(key)], PackageLimits())
    assert _written(dest) == 0
