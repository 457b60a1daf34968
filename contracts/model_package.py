"""Model package: a signed manifest, file hashes, and safe unpacking of the archive."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.messages import SemVer, Sha256Hex, utc_now

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_PREFIX = "ed25519:"
_HASH_CHUNK = 1 << 20


class PackageError(ValueError):
    """A package that is malformed, hostile, unsigned, mis-signed or mis-hashed."""


@dataclass(frozen=True)
class PackageLimits:
    """Bounds that unpacking enforces before writing anything large."""

    max_members: int = 64
    max_member_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024
    max_manifest_bytes: int = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the model's input expects: the edge feeds raw pixels in this form."""

    name: str
    shape: list[int] = Field(min_length=2, max_length=5)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    dtype: Literal["uint8", "float32"] = "float32"
    color_order: Literal["RGB", "BGR"] = "RGB"
    scale: str = "raw 0-255"


class OutputSpec(_Strict):
    """The model's output: softmax probabilities over `classes`."""

    name: str
    shape: list[int] = Field(min_length=1, max_length=3)


Precision = Literal["f32", "f16", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("f32", "f16", "bf16")


class SelfTestSpec(_Strict):
    """Fixed inputs with f32 reference outputs; a node must reproduce them at its precision."""

    file: str = "selftest.npz"
    atol: float = Field(gt=0.0, le=1.0, description="allowed max abs probability difference at f32")
    tolerances: dict[Precision, Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=dict, description="allowed max abs probability difference per precision class"
    )
    ood_rtol: float | None = Field(
        default=None, gt=0.0, le=1.0, description="allowed relative OOD score difference at reduced precision"
    )
    min_margin: float | None = Field(
        default=None, ge=0.0, le=1.0, description="smallest top-1 margin among the inputs (labels hold at any precision)"
    )
    measured: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="deviations the trainer measured, per runtime and precision"
    )

    def tolerance(self, precision: Precision) -> float:
        """The probability tolerance of a precision class (format-1 packages have one for all)."""
        return self.tolerances.get(precision, self.atol)


class OodSpec(_Strict):
    """The out-of-distribution detector inside the model: its score output and the threshold."""

    method: Literal["mahalanobis", "mahalanobis+stain"] = Field(
        "mahalanobis", description="feature distance alone, or with the stain gate folded into the same score"
    )
    output: str = Field("ood_score", description="model output holding the score (higher = further from training)")
    threshold: float = Field(gt=0.0, description="a score above this marks the input out of distribution")
    in_distribution_flag_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="share of held-out in-distribution images flagged when fitted"
    )
    fitted_on: str = ""


class FileEntry(_Strict):
    """Size and hash of one file in the package."""

    size: int = Field(ge=0)
    sha256: Sha256Hex


class Manifest(_Strict):
    """Everything a consumer needs to know about a model version."""

    format: Literal[1, 2] = 2
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    version: SemVer
    created: datetime = Field(default_factory=utc_now)
    classes: list[str] = Field(min_length=2, max_length=64)
    input: InputSpec
    output: OutputSpec
    model_xml: str = "model.xml"
    model_bin: str = "model.bin"
    model_onnx: str | None = Field(default=None, description="ONNX model (format 2)")
    model_tflite: str | None = Field(default=None, description="LiteRT / TFLite model (format 2)")
    selftest: SelfTestSpec
    ood: OodSpec | None = Field(default=None, description="out-of-distribution detector (format 2)")
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    training_data_sha256: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)


    def required_files(self) -> set[str]:
        """Every file the manifest names: the IR, the other runtimes' models and the self-test set."""
        optional = {name for name in (self.model_onnx, self.model_tflite) if name}
        return {self.model_xml, self.model_bin, self.selftest.file} | optional

    @model_validator(mode="after")
    def _format_fields(self) -> "Manifest":
        if self.format == 1 and (self.model_onnx or self.model_tflite or self.ood or self.selftest.tolerances):
            raise ValueError("format 1 manifests carry only the OpenVINO IR and one self-test tolerance")
        return self


def version_key(version: str) -> tuple[int, int, int]:
    """Sortable key of a semantic version."""
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def generate_private_key() -> Ed25519PrivateKey:
    """A new Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a private key as PEM, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PackageError(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The `ed25519:<base64>` form used in confs.json's trusted list."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Parse an `ed25519:<base64>` public key, or raise PackageError."""
    if not isinstance(text, str) or not text.startswith(PUBLIC_KEY_PREFIX):
        raise PackageError(f"public key must start with {PUBLIC_KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX):], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise PackageError(f"public key is not 32 bytes of base64: {exc}") from None


def manifest_bytes(manifest: Manifest) -> bytes:
    """Canonical bytes of a manifest, the ones that are signed."""
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=2).encode()


def build_package(
    out_path: Path, manifest: Manifest, files: Mapping[str, Path], private_key: Ed25519PrivateKey
) -> Manifest:
    """Hash the files into the manifest, sign it, and write the .tar.gz package."""
    for arcname in files:
        _check_member_name(arcname)
        if arcname in (MANIFEST_NAME, SIGNATURE_NAME):
            raise PackageError(f"{arcname} is reserved")
    if missing := manifest.required_files() - set(files):
        raise PackageError(f"package files are missing {sorted(missing)}")
    entries = {name: FileEntry(size=Path(p).stat().st_size, sha256=sha256_file(Path(p))) for name, p in files.items()}
    signed = manifest.model_copy(update={"files": entries})
    body = manifest_bytes(signed)
    signature = private_key.sign(body)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        _add_bytes(archive, MANIFEST_NAME, body)
        _add_bytes(archive, SIGNATURE_NAME, base64.b64encode(signature))
        for arcname, path in sorted(files.items()):
            archive.add(str(path), arcname=arcname, recursive=False, filter=_normalise_info)
    partial.replace(out_path)
    return signed


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _normalise_info(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise PackageError(f"member {name!r} has an absolute or parent-relative path")
    if any(part in ("", ".") for part in name.split("/")):
        raise PackageError(f"member {name!r} is not a plain relative path")


def _check_members(members: list[tarfile.TarInfo], limits: PackageLimits) -> None:
    if len(members) > limits.max_members:
        raise PackageError(f"archive has {len(members)} members, more than {limits.max_members}")
    total = 0
    seen: set[str] = set()
    for member in members:
        _check_member_name(member.name)
        if not member.isfile():
            raise PackageError(f"member {member.name!r} is not a regular file (links, devices and dirs are refused)")
        if member.name in seen:
            raise PackageError(f"member {member.name!r} appears twice")
        seen.add(member.name)
        if member.size > limits.max_member_bytes:
            raise PackageError(f"member {member.name!r} is {member.size} bytes, over {limits.max_member_bytes}")
        total += member.size
        if total > limits.max_total_bytes:
            raise PackageError(f"archive unpacks to more than {limits.max_total_bytes} bytes")


def _copy_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, limit: int) -> None:
    source = archive.extractfile(member)
    if source is None:
        raise PackageError(f"member {member.name!r} cannot be read")
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        while chunk := source.read(_HASH_CHUNK):
            written += len(chunk)
            if written > limit:
                raise PackageError(f"member {member.name!r} is larger than its header says")
            out.write(chunk)


def _verify_signature(body: bytes, signature_b64: bytes, trusted_keys: Sequence[Ed25519PublicKey]) -> None:
    if not trusted_keys:
        raise PackageError("no trusted public keys are configured: refusing every package")
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except ValueError:
        raise PackageError("signature is not base64") from None
    for key in trusted_keys:
        try:
            key.verify(signature, body)
            return
        except InvalidSignature:
            continue
    raise PackageError("manifest signature does not verify with any trusted key")


def _parse_manifest(body: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(body)
    except ValidationError as exc:
        raise PackageError(f"manifest is invalid: {exc.errors(include_url=False)[0]}") from None


def unpack_package(
    path: Path,
    dest: Path,
    trusted_keys: Sequence[Ed25519PublicKey],
    limits: PackageLimits = PackageLimits(),
) -> Manifest:
    """Safely unpack a package into dest (which must not exist) and verify it; on any failure dest is removed."""
    dest = Path(dest)
    if dest.exists():
        raise PackageError(f"destination {dest} already exists")
    dest.mkdir(parents=True)
    try:
        return _unpack_into(Path(path), dest, trusted_keys, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _unpack_into(path: Path, dest: Path, trusted_keys: Sequence[Ed25519PublicKey], limits: PackageLimits) -> Manifest:
    try:
        with tarfile.open(path, "r:*") as archive:
            members = archive.getmembers()
            _check_members(members, limits)
            by_name = {m.name: m for m in members}
            for required in (MANIFEST_NAME, SIGNATURE_NAME):
                if required not in by_name:
                    raise PackageError(f"package has no {required}")
            if by_name[MANIFEST_NAME].size > limits.max_manifest_bytes or by_name[SIGNATURE_NAME].size > _MAX_SIGNATURE_BYTES:
                raise PackageError("manifest is too large")
            # Signature first, in memory: nothing of an unsigned or mis-signed upload reaches the disk.
            body = _read_member(archive, by_name[MANIFEST_NAME], limits.max_manifest_bytes)
            signature = _read_member(archive, by_name[SIGNATURE_NAME], _MAX_SIGNATURE_BYTES)
            _verify_signature(body, signature, trusted_keys)
            manifest = _parse_manifest(body)
            _check_listed(manifest, by_name)
            (dest / MANIFEST_NAME).write_bytes(body)
            (dest / SIGNATURE_NAME).write_bytes(signature)
            for name, entry in manifest.files.items():
                _copy_member(archive, by_name[name], dest / name, entry.size)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, PackageError):
            raise
        raise PackageError(f"not a readable package archive: {exc}") from None
    _verify_files(manifest, dest, set(by_name) - {MANIFEST_NAME, SIGNATURE_NAME})
    return manifest


_MAX_SIGNATURE_BYTES = 4096


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    """A small member's bytes, never more than limit."""
    source = archive.extractfile(member)
    if source is None:
        raise PackageError(f"member {member.name!r} cannot be read")
    data = source.read(limit + 1)
    if len(data) > limit:
        raise PackageError(f"member {member.name!r} is larger than {limit} bytes")
    return data


def _check_listed(manifest: Manifest, by_name: dict[str, tarfile.TarInfo]) -> None:
    """Before unpacking: the archive holds exactly the signed manifest's files, each of its signed size."""
    present = set(by_name) - {MANIFEST_NAME, SIGNATURE_NAME}
    if present != set(manifest.files):
        raise PackageError(f"archive files {sorted(present)} differ from the manifest's {sorted(manifest.files)}")
    for name, entry in manifest.files.items():
        _check_member_name(name)
        if by_name[name].size != entry.size:
            raise PackageError(f"file {name!r} does not match its manifest size")


def _verify_files(manifest: Manifest, root: Path, present: set[str]) -> None:
    listed = set(manifest.files)
    if present != listed:
        raise PackageError(f"archive files {sorted(present)} differ from the manifest's {sorted(listed)}")
    for name, entry in manifest.files.items():
        _check_member_name(name)
        target = root / name
        if target.stat().st_size != entry.size or sha256_file(target) != entry.sha256:
            raise PackageError(f"file {name!r} does not match its manifest hash")
    for required in sorted(manifest.required_files()):
        if required not in listed:
            raise PackageError(f"manifest does not list {required!r}")


def verify_signed_manifest(
    body: bytes, signature_b64: bytes, trusted_keys: Sequence[Ed25519PublicKey]
) -> Manifest:
    """Check a manifest's detached signature with the trusted keys and parse it, or raise PackageError."""
    _verify_signature(body, signature_b64, trusted_keys)
    return _parse_manifest(body)


def read_manifest(
    path: Path, trusted_keys: Sequence[Ed25519PublicKey], limits: PackageLimits = PackageLimits()
) -> Manifest:
    """Fully verify a package and return its manifest, keeping nothing on disk."""
    with tempfile.TemporaryDirectory(prefix="pkg-verify-") as tmp:
        return unpack_package(Path(path), Path(tmp) / "pkg", trusted_keys, limits)
