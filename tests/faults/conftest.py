"""Fault suite: the `--faults-scale` option, the `faults` marker, a running stack per test, and the figures line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from broker_harness import BrokerHandle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faults.stack import FaultStack, Scale, Tally
from support.tiny_package import make_tiny_package

from contracts.model_package import public_key_text

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
_FIGURES: dict[str, Tally] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--faults-scale=ci` (default, fits `make test`) or `full` (`make faults`: 30-s cut, more images)."""
    parser.addoption(
        "--faults-scale", choices=("ci", "full"), default="ci", help="size of the fault scenarios (default: ci)"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker every fault scenario carries."""
    config.addinivalue_line("markers", "faults: fault scenarios against the running system (make faults)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """End with one JSON line of the figures (also written to tests/artifacts/faults.json)."""
    if not _FIGURES:
        return
    scenarios = {name: tally.as_dict() for name, tally in sorted(_FIGURES.items())}
    line = json.dumps({"scenarios": scenarios, "lost": sum(t.lost for t in _FIGURES.values())})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "faults.json").write_text(line + "\n")
    terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    """How big each scenario is."""
    return Scale.named(pytestconfig.getoption("--faults-scale"))


@pytest.fixture
def record() -> Callable[[str, Tally], None]:
    """Keep one scenario's figures for the closing JSON line."""

    def keep(name: str, tally: Tally) -> None:
        _FIGURES[name] = tally

    return keep


@pytest.fixture
def fault_stack(broker_factory: Callable[..., BrokerHandle], tmp_path: Path) -> Iterator[FaultStack]:
    """A real broker, the real ingest process on SQLite, and room for real edge nodes; all stopped afterwards."""
    broker = broker_factory(devices=("devA", "devB"))
    stack = FaultStack(tmp_path, broker)
    try:
        stack.start_ingest()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def late_autosave_stack(broker_factory: Callable[..., BrokerHandle], tmp_path: Path) -> Iterator[FaultStack]:
    """Like fault_stack, but the broker saves only every 60 s (production): a SIGKILL loses its sessions."""
    broker = broker_factory(devices=("devA",), settings={"autosave_interval": 60})
    stack = FaultStack(tmp_path, broker)
    try:
        stack.start_ingest()
        yield stack
    finally:
        stack.close()


@dataclass(frozen=True)
class SignedPackages:
    """The tiny model package v1.0.0 and the key that signed it (nodes trust its public half)."""

    key: Ed25519PrivateKey
    v1: Path

    @property
    def public_key(self) -> str:
        """The key as confs.json lists it."""
        return public_key_text(self.key)


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> SignedPackages:
    """The signed tiny package every node starts with, built once per run."""
    key = Ed25519PrivateKey.generate()
    return SignedPackages(key, make_tiny_package(tmp_path_factory.mktemp("fault-packages"), key, "1.0.0"))
