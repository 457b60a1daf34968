"""The image every Dockerfile builds FROM: the public Python image if a registry answers, else a local Debian base."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from .engine import EngineError, run

logger = logging.getLogger(__name__)

PUBLIC_IMAGE = "python:3.11-slim-bookworm"
LOCAL_IMAGE = "all-edge/bookworm-base:latest"
MIRROR = "http://deb.debian.org/debian"
# CAs the host trusts beyond Debian's (a TLS-inspecting proxy's): the local base trusts them too, so pip works.
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")


def image_exists(name: str, env: dict[str, str]) -> bool:
    """True if the engine holds an image by that name."""
    return run(["docker", "image", "inspect", name], check=False, env=env).returncode == 0


def pull_public(env: dict[str, str], timeout_s: float = 120) -> bool:
    """Pull the public Python image; False if no registry answers (which fails fast on these machines)."""
    try:
        return run(["docker", "pull", "-q", PUBLIC_IMAGE], check=False, env=env, timeout=timeout_s).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def build_local(rootfs: Path, env: dict[str, str]) -> None:
    """debootstrap a minimal bookworm with CA certificates into rootfs, then `docker import` it."""
    if rootfs.exists():
        shutil.rmtree(rootfs)
    run(["nice", "-n", "10", "debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm",
         str(rootfs), MIRROR], timeout=900)
    try:
        extra = sorted(HOST_EXTRA_CAS.glob("*.crt")) if HOST_EXTRA_CAS.is_dir() else []
        if extra:
            target = rootfs / HOST_EXTRA_CAS.relative_to("/")
            for cert in extra:
                shutil.copy(cert, target / cert.name)
            run(["chroot", str(rootfs), "update-ca-certificates"], timeout=120)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / cache).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-", LOCAL_IMAGE], stdin=tar.stdout, capture_output=True,
                                  text=True, env=env, timeout=600)
        tar.wait(60)
        if imported.returncode != 0 or tar.returncode != 0:
            raise EngineError(f"docker import failed: {imported.stderr.strip()}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def ensure_base(work: Path, env: dict[str, str], requested: str | None) -> tuple[str, str]:
    """(image name, how it was got): BASE_IMAGE if set, the public image if it pulls, else the local base."""
    if requested:
        return requested, "given"
    if image_exists(PUBLIC_IMAGE, env) or pull_public(env):
        return PUBLIC_IMAGE, "registry"
    if image_exists(LOCAL_IMAGE, env):
        return LOCAL_IMAGE, "cached"
    logger.info("no registry answers: building %s with debootstrap", LOCAL_IMAGE)
    build_local(work / "base-rootfs", env)
    return LOCAL_IMAGE, "debootstrap"
