"""Hostile-input suite: `--security-scale`, the `security` marker, one running stack, and the closing JSON line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_harness import broker_pool
from security.stack import Scale, SecurityStack, close_stack, start_stack

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HERE = Path(__file__).resolve().parent
_HELD: dict[str, bool] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--security-scale=ci` (default, fits `make test`) or `full` (`make security`)."""
    parser.addoption("--security-scale", choices=("ci", "full"), default="ci",
                     help="size of the hostile-input attacks (default: ci)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker every attack carries."""
    config.addinivalue_line("markers", "security: attacks on the running system (make security)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/security is an attack."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """An attack is held when its test passed; a failure in setup or call counts as not held."""
    if "security" not in report.keywords or HERE not in Path(report.fspath).resolve().parents:
        return
    name = report.nodeid.split("::", 1)[-1]
    if report.when == "call" or (report.when == "setup" and report.failed):
        _HELD[name] = report.passed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """End with one JSON line (also written to tests/artifacts/security.json)."""
    if not _HELD:
        return
    line = json.dumps({"attacks": len(_HELD), "held": sum(_HELD.values()),
                       "failed": sorted(name for name, held in _HELD.items() if not held)})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "security.json").write_text(line + "\n")
    terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    """How big each attack is."""
    return Scale.named(pytestconfig.getoption("--security-scale"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, scale: Scale) -> Iterator[SecurityStack]:
    """Broker (devA, devB, dashboard), the ingest process, gunicorn with two workers and node devA, all running."""
    with broker_pool(tmp_path_factory) as factory:
        broker = factory(devices=("devA", "devB"), settings={"bind_client_id": True})  # as production renders it
        running = start_stack(tmp_path_factory.mktemp("security"), broker, scale)
        try:
            yield running
        finally:
            close_stack(running)
