"""A signed package verifies; tampered, unsigned, mis-signed and hostile packages are refused."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from pydantic import ValidationError

from contracts.model_package import (
    OodSpec,
    PackageError,
    PackageLimits,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    read_manifest,
    save_private_key,
    unpack_package,
    version_key,
)
from support.tiny_package import make_tiny_package


@pytest.fixture(scope="module")
def signing_key():  # type: ignore[no-untyped-def]
    return generate_private_key()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, signing_key) -> Path:  # type: ignore[no-untyped-def]
    return make_tiny_package(tmp_path_factory.mktemp("pkg"), signing_key, "1.4.2")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def write_archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_signed_package_verifies_and_unpacks(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = unpack_package(package, tmp_path / "slot", [signing_key.public_key()])
    assert manifest.version == "1.4.2"
    assert manifest.classes == ["Benign", "Early", "Pre", "Pro"]
    assert set(manifest.files) == {"model.xml", "model.bin", "selftest.npz"}
    assert (tmp_path / "slot" / "model.bin").stat().st_size == manifest.files["model.bin"].size


def test_any_trusted_key_in_the_list_verifies(package: Path, signing_key) -> None:  # type: ignore[no-untyped-def]
    keys = [generate_private_key().public_key(), signing_key.public_key()]
    assert read_manifest(package, keys).version == "1.4.2"


@pytest.mark.parametrize("target", ["manifest.json", "model.xml", "model.bin", "selftest.npz"])
def test_a_flipped_byte_in_any_file_is_refused(package: Path, signing_key, tmp_path: Path, target: str) -> None:  # type: ignore[no-untyped-def]
    files = members(package)
    data = bytearray(files[target])
    data[len(data) // 2] ^= 0x01
    files[target] = bytes(data)
    tampered = write_archive(tmp_path / "tampered.tar.gz", files)
    expected = "signature" if target == "manifest.json" else "does not match its manifest hash"
    with pytest.raises(PackageError, match=expected):
        unpack_package(tampered, tmp_path / "slot", [signing_key.public_key()])
    assert not (tmp_path / "slot").exists()


def test_wrong_key_is_refused(package: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="does not verify with any trusted key"):
        unpack_package(package, tmp_path / "slot", [generate_private_key().public_key()])


def test_no_trusted_keys_refuses_everything(package: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="no trusted public keys"):
        unpack_package(package, tmp_path / "slot", [])


def test_missing_signature_is_refused(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = members(package)
    del files["manifest.sig"]
    with pytest.raises(PackageError, match="no manifest.sig"):
        unpack_package(write_archive(tmp_path / "x.tar.gz", files), tmp_path / "slot", [signing_key.public_key()])


def test_extra_unlisted_file_is_refused(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = members(package) | {"payload.sh": b"#!/bin/sh\nrm -rf /\n"}
    with pytest.raises(PackageError, match="differ from the manifest"):
        unpack_package(write_archive(tmp_path / "x.tar.gz", files), tmp_path / "slot", [signing_key.public_key()])


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "./x", "a\\..\\evil"])
def test_traversal_and_absolute_paths_are_refused(signing_key, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    hostile = write_archive(tmp_path / "x.tar.gz", {name: b"owned"})
    with pytest.raises(PackageError, match="path"):
        unpack_package(hostile, tmp_path / "slot", [signing_key.public_key()])
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.DIRTYPE])
def test_links_devices_and_dirs_are_refused(signing_key, tmp_path: Path, kind: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("model.bin")
        info.type = kind
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(PackageError, match="not a regular file"):
        unpack_package(path, tmp_path / "slot", [signing_key.public_key()])


def test_oversized_members_and_totals_are_refused(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PackageError, match="bytes, over"):
        unpack_package(package, tmp_path / "a", [signing_key.public_key()], PackageLimits(max_member_bytes=1000))
    with pytest.raises(PackageError, match="unpacks to more than"):
        unpack_package(package, tmp_path / "b", [signing_key.public_key()], PackageLimits(max_total_bytes=10_000))
    with pytest.raises(PackageError, match="members"):
        unpack_package(package, tmp_path / "c", [signing_key.public_key()], PackageLimits(max_members=2))


@pytest.mark.parametrize("content", [b"", b"not a tar at all", b"\x1f\x8b\x08\x00garbage"])
def test_non_package_files_are_refused(signing_key, tmp_path: Path, content: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(content)
    with pytest.raises(PackageError, match="not a readable package"):
        unpack_package(path, tmp_path / "slot", [signing_key.public_key()])


def test_garbage_signature_is_refused(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = members(package)
    files["manifest.sig"] = b"%%% not base64 %%%"
    with pytest.raises(PackageError, match="not base64"):
        unpack_package(write_archive(tmp_path / "x.tar.gz", files), tmp_path / "slot", [signing_key.public_key()])


def test_resigned_manifest_with_bad_fields_is_refused(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = members(package)
    manifest = json.loads(files["manifest.json"])
    manifest["version"] = "one"
    files["manifest.json"] = json.dumps(manifest).encode()
    files["manifest.sig"] = base64.b64encode(signing_key.sign(files["manifest.json"]))
    with pytest.raises(PackageError, match="manifest is invalid"):
        unpack_package(write_archive(tmp_path / "x.tar.gz", files), tmp_path / "slot", [signing_key.public_key()])


def test_existing_destination_is_never_overwritten(package: Path, signing_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "slot").mkdir()
    with pytest.raises(PackageError, match="already exists"):
        unpack_package(package, tmp_path / "slot", [signing_key.public_key()])


def test_keys_round_trip_through_pem_and_text(tmp_path: Path, signing_key) -> None:  # type: ignore[no-untyped-def]
    save_private_key(signing_key, tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
    loaded = load_private_key(tmp_path / "k.pem")
    assert public_key_text(loaded) == public_key_text(signing_key)
    assert public_key_text(parse_public_key(public_key_text(signing_key))) == public_key_text(signing_key)


@pytest.mark.parametrize("text", ["", "ed25519:", "rsa:AAAA", "ed25519:not-base64!", "ed25519:" + "A" * 10])
def test_bad_public_keys_are_refused(text: str) -> None:
    with pytest.raises(PackageError):
        parse_public_key(text)


def test_versions_sort_numerically() -> None:
    assert version_key("1.10.0") > version_key("1.9.9") > version_key("0.99.99")


@pytest.mark.parametrize("method", ["mahalanobis", "mahalanobis+stain"])
def test_ood_spec_takes_the_known_methods(method: str) -> None:
    assert OodSpec.model_validate({"method": method, "threshold": 1.0}).method == method


@pytest.mark.parametrize("spec", [{"method": "energy", "threshold": 1.0}, {"threshold": 0.0}, {"threshold": 1.0, "limits": [1, 2]}])
def test_ood_spec_refuses_unknown_methods_and_fields(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        OodSpec.model_validate(spec)
