"""A node that dies without saying goodbye is reported OFFLINE, and stays so for late readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from broker_harness import BrokerHandle

from contracts.messages import NodeState, StatusMessage, from_bytes

WILL_CLIENT = Path(__file__).with_name("will_client.py")
ROOT = Path(__file__).resolve().parents[2]


def _state(payload: bytes) -> NodeState:
    """The state carried by a Status payload."""
    message = from_bytes(payload)
    assert isinstance(message, StatusMessage)
    return message.state


def test_sigkilled_client_leaves_a_retained_offline_will(broker: BrokerHandle) -> None:
    topic = broker.topic("devA", "Status")
    watch = broker.collector("dashboard", topic)
    proc = subprocess.Popen(
        [sys.executable, str(WILL_CLIENT), broker.host, str(broker.port), "devA", broker.credentials["devA"], topic],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        online = watch.wait_for(topic)
        assert _state(online.payload) is NodeState.ONLINE
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    offline = watch.wait_for(topic, where=lambda m: _state(m.payload) is NodeState.OFFLINE)
    assert offline.qos == 1

    late = broker.collector("dashboard", topic)
    retained = late.wait_for(topic)
    assert retained.retain
    assert _state(retained.payload) is NodeState.OFFLINE
