"""Helpers of the browser tests: the running stack's handle, waiting, screenshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.confs import Confs
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
SIM_DEVICES = ("sim-0001", "sim-0002", "sim-0003")


def wait_for(probe: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    """The suite's wait_until, polling every `every` seconds (pages are slower to ask than a database)."""
    return wait_until(probe, timeout, what, every=every)


@dataclass
class Stack:
    """A running dashboard with its broker, ingest, simulated fleet and an admin account."""

    base_url: str
    confs: Confs
    admin: tuple[str, str]
    viewer: tuple[str, str]
    signing_key: Ed25519PrivateKey
    packages: Path
    app: object
    logs: Path
    broker: object = None  # the BrokerHandle, to add accounts and publish as a device


def shot(page: object, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
