"""A/B model store on disk: verified slots, and an `active`/`previous` pointer switched atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.model_package import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    PackageError,
    PackageLimits,
    read_manifest,
    sha256_file,
    unpack_package,
    verify_signed_manifest,
    version_key,
)

logger = logging.getLogger(__name__)

POINTER_NAME = "state.json"
SLOTS_DIR = "slots"
INCOMING_DIR = "incoming"


class ModelStoreError(RuntimeError):
    """The store cannot do what was asked (no previous slot, a slot gone missing, a bad pointer)."""


@dataclass(frozen=True)
class InstalledModel:
    """An unpacked, verified package in its own slot."""

    path: Path
    manifest: Manifest

    @property
    def slot(self) -> str:
        """Name of the slot directory."""
        return self.path.name

    @property
    def version(self) -> str:
        """The package's semantic version."""
        return self.manifest.version


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in path durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomically(path: Path, data: object) -> None:
    """Write JSON to a temporary file, fsync it, rename it over path and fsync the directory."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under root, so a slot survives power loss once renamed."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


class ModelStore:
    """Verified model slots under root; only `activate` and `rollback` change what serves."""

    def __init__(
        self, root: Path, trusted_keys: Sequence[Ed25519PublicKey], limits: PackageLimits = PackageLimits()
    ) -> None:
        self.root = Path(root)
        self.trusted_keys = list(trusted_keys)
        self.limits = limits
        self._slots = self.root / SLOTS_DIR
        self._incoming = self.root / INCOMING_DIR
        self._pointer = self.root / POINTER_NAME
        self._lock = threading.RLock()
        self._slots.mkdir(parents=True, exist_ok=True)
        self._incoming.mkdir(parents=True, exist_ok=True)

    # pointer ---------------------------------------------------------------------------------

    def _read_pointer(self) -> dict[str, str | None]:
        """The `active`/`previous` slot names; an absent pointer means an empty store."""
        try:
            raw = json.loads(self._pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"active": None, "previous": None}
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"model store pointer {self._pointer} is unreadable: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelStoreError(f"model store pointer {self._pointer} is not a JSON object")
        pointer: dict[str, str | None] = {}
        for key in ("active", "previous"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or "/" in value or value.startswith(".")):
                raise ModelStoreError(f"model store pointer has a bad {key} slot {value!r}")
            pointer[key] = value
        return pointer

    def _write_pointer(self, active: str | None, previous: str | None) -> None:
        write_json_atomically(self._pointer, {"format": 1, "active": active, "previous": previous})

    def _load_slot(self, name: str | None) -> InstalledModel | None:
        """The model in a slot, its manifest signature checked; None for no slot."""
        if name is None:
            return None
        path = self._slots / name
        try:
            body = (path / MANIFEST_NAME).read_bytes()
            signature = (path / SIGNATURE_NAME).read_bytes()
        except OSError as exc:
            raise ModelStoreError(f"slot {name} is missing its manifest: {exc.strerror}") from None
        return InstalledModel(path, verify_signed_manifest(body, signature, self.trusted_keys))

    # queries ---------------------------------------------------------------------------------

    def active(self) -> InstalledModel | None:
        """The model that should serve, or None for an empty store."""
        with self._lock:
            return self._load_slot(self._read_pointer()["active"])

    def previous(self) -> InstalledModel | None:
        """The model that served before the active one, kept for rollback."""
        with self._lock:
            return self._load_slot(self._read_pointer()["previous"])

    def check(self, model: InstalledModel) -> None:
        """Re-hash every file of an installed slot against its signed manifest (catches disk corruption)."""
        for name, entry in model.manifest.files.items():
            target = model.path / name
            if not target.is_file() or target.stat().st_size != entry.size or sha256_file(target) != entry.sha256:
                raise ModelStoreError(f"slot {model.slot}: file {name!r} no longer matches its manifest")

    def verify_package(self, package_path: Path) -> Manifest:
        """Fully verify a package (members, signature, hashes) without installing it."""
        return read_manifest(Path(package_path), self.trusted_keys, self.limits)

    # changes ---------------------------------------------------------------------------------

    def install(self, package_path: Path) -> InstalledModel:
        """Safely unpack and verify a package into a fresh slot; it does not serve until activated."""
        with self._lock:
            scratch = self._incoming / uuid.uuid4().hex
            manifest = unpack_package(Path(package_path), scratch, self.trusted_keys, self.limits)
            try:
                _fsync_tree(scratch)
                slot = self._slots / f"{manifest.version}-{uuid.uuid4().hex[:8]}"
                os.rename(scratch, slot)
                _fsync_dir(self._slots)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            logger.info("installed %s %s into slot %s", manifest.name, manifest.version, slot.name)
            return InstalledModel(slot, manifest)

    def activate(self, model: InstalledModel) -> None:
        """Make model active in one atomic pointer write; the old active becomes previous."""
        with self._lock:
            if model.path.parent != self._slots or not (model.path / MANIFEST_NAME).is_file():
                raise ModelStoreError(f"{model.path} is not an installed slot of this store")
            pointer = self._read_pointer()
            if pointer["active"] == model.slot:
                return
            self._write_pointer(model.slot, pointer["active"])
            logger.info("model %s (slot %s) is now active", model.version, model.slot)
            self._remove_slot(pointer["previous"])

    def rollback(self, *, discard_current: bool = False) -> InstalledModel:
        """Make the previous slot active; the current one becomes previous, or is deleted if discarded."""
        with self._lock:
            pointer = self._read_pointer()
            previous = self._load_slot(pointer["previous"])
            if previous is None:
                raise ModelStoreError("there is no previous model to roll back to")
            self._write_pointer(previous.slot, None if discard_current else pointer["active"])
            logger.info("rolled back to model %s (slot %s)", previous.version, previous.slot)
            if discard_current:
                self._remove_slot(pointer["active"])
            return previous

    def discard(self, model: InstalledModel) -> None:
        """Delete an installed slot that never became active or previous."""
        with self._lock:
            if model.slot in self._read_pointer().values():
                raise ModelStoreError(f"slot {model.slot} is in use and cannot be discarded")
            shutil.rmtree(model.path, ignore_errors=True)

    def forget_previous(self) -> None:
        """Drop the previous slot (it failed its self-test and must not be rolled back to)."""
        with self._lock:
            pointer = self._read_pointer()
            if pointer["previous"] is not None:
                self._write_pointer(pointer["active"], None)
                self._remove_slot(pointer["previous"])

    def recover(self) -> None:
        """On start: drop half-unpacked and never-activated slots, and repair a pointer to missing slots."""
        with self._lock:
            for leftover in self._incoming.iterdir():
                logger.warning("removing incomplete unpack %s", leftover.name)
                shutil.rmtree(leftover, ignore_errors=True)
            for torn in self.root.glob(f".{POINTER_NAME}.*.tmp"):
                torn.unlink(missing_ok=True)
            try:
                pointer = self._read_pointer()
            except ModelStoreError as exc:
                logger.error("%s; rebuilding it from the newest valid slot", exc)
                pointer = {"active": self._newest_valid_slot(), "previous": None}
                self._write_pointer(pointer["active"], None)
            active, previous = (self._usable(pointer["active"]), self._usable(pointer["previous"]))
            if active is None and previous is not None:
                logger.error("active slot %s is unusable; the previous one becomes active", pointer["active"])
                active, previous = previous, None
            if (active, previous) != (pointer["active"], pointer["previous"]):
                self._write_pointer(active, previous)
            self._remove_unreferenced()

    # internals -------------------------------------------------------------------------------

    def _usable(self, name: str | None) -> str | None:
        """name if its slot loads with a valid signed manifest, else None."""
        try:
            return name if self._load_slot(name) is not None else None
        except (ModelStoreError, PackageError) as exc:
            logger.error("slot %s is unusable: %s", name, exc)
            return None

    def _newest_valid_slot(self) -> str | None:
        """The usable slot with the highest version, used only when the pointer file is corrupt."""
        candidates = []
        for slot in self._slots.iterdir():
            try:
                model = self._load_slot(slot.name)
            except (ModelStoreError, PackageError):
                continue
            if model is not None:
                candidates.append((version_key(model.version), slot.name))
        return max(candidates)[1] if candidates else None

    def _remove_slot(self, name: str | None) -> None:
        """Delete a slot that the pointer no longer names (disk hygiene: only active and previous stay)."""
        if name and name not in self._read_pointer().values():
            logger.info("removing old model slot %s", name)
            shutil.rmtree(self._slots / name, ignore_errors=True)

    def _remove_unreferenced(self) -> None:
        """Delete every slot other than active and previous (after a crash: orphans of an unfinished install)."""
        keep = {name for name in self._read_pointer().values() if name}
        for slot in self._slots.iterdir():
            if slot.name not in keep:
                logger.info("removing old model slot %s", slot.name)
                shutil.rmtree(slot, ignore_errors=True)

