"""Shared fixtures: real Mosquitto brokers started from the project's own broker config.

`broker` gives a fresh, started broker per test; `broker_factory(**kw)` makes more (see
`broker_harness.make_broker` for the options); `session_broker` is one broker shared by a
whole run, for tests that neither restart it nor change its accounts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from broker_harness import BrokerHandle, broker_pool


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BrokerHandle]]:
    """Make started brokers on free ports; all are stopped after the test."""
    with broker_pool(tmp_path_factory) as factory:
        yield factory


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerHandle]) -> BrokerHandle:
    """A fresh started broker with devA, devB (Hospital/Lab1) and the dashboard account."""
    return broker_factory()


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """One started broker for the whole run; do not restart it or add accounts to it."""
    with broker_pool(tmp_path_factory) as factory:
        yield factory()


@pytest.fixture
def session_broker_clients(session_broker: BrokerHandle) -> Iterator[BrokerHandle]:
    """The session broker, with clients made during the test disconnected afterwards."""
    yield session_broker
    session_broker.close_clients()
