"""Run the edge node as a real subprocess (`python -m edge_node run`) against the harness broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_harness import BrokerHandle, MessageCollector, free_port
from support import waiting
from contracts.messages import NodeState, SensorsMessage, StatusMessage, from_bytes

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"


def write_confs(
    directory: Path,
    broker: BrokerHandle,
    package: Path,
    public_key: str,
    device: str = "devA",
    public_url: str | None = None,
    **edge_overrides: Any,
) -> Path:
    """A confs.json for one node in directory, pointing at the harness broker; returns its path.

    public_url is the dashboard origin the node downloads packages from (and sends its token to).
    """
    base = json.loads((ROOT / "confs.json").read_text())
    if public_url is not None:
        base["dashboard"]["public_url"] = public_url
    base["mqtt"].update(host=broker.host, port=broker.port, tls=False, ca_file=None, password_file=None)
    base["identity"].update(location=broker.location, zone=broker.zone)
    inputs = {"watch_dir": str(directory / "inbox"), "http": True, "camera": None, "camera_interval_s": 1.0}
    inputs.update(edge_overrides.pop("inputs", {}))
    base["edge_node"].update(
        device_id=device,
        inputs=inputs,
        model_store=str(directory / "models"),
        initial_package=str(package),
        outbox_path=str(directory / "outbox.db"),
        http_port=free_port(),
        token_file=None,
        life_interval_s=60.0,
    )
    base["edge_node"].update(edge_overrides)
    base["ota"]["trusted_public_keys"] = [public_key]
    path = directory / "confs.json"
    path.write_text(json.dumps(base, indent=2))
    return path


@dataclass
class NodeProcess:
    """One `python -m edge_node run` subprocess; logs go to a file beside its confs."""

    confs_path: Path
    password: str
    env_extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def confs(self) -> dict[str, Any]:
        """The confs.json this node runs with."""
        return json.loads(self.confs_path.read_text())

    @property
    def log_path(self) -> Path:
        """Where the node's stderr goes."""
        return self.confs_path.with_name("node.log")

    def start(self) -> None:
        """Start the node in the background."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MQTT_PASSWORD": self.password, "EDGE_TOKEN": TOKEN}
        env.update(self.env_extra)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_node", "run", "--confs", str(self.confs_path)],
                cwd=self.confs_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )

    def log(self) -> str:
        """What the node logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def inbox(self) -> Path:
        """The watched folder."""
        return Path(self.confs["edge_node"]["inputs"]["watch_dir"])

    @property
    def http_url(self) -> str:
        """URL of POST /Inference."""
        return f"http://127.0.0.1:{self.confs['edge_node']['http_port']}/Inference"


def status_state(payload: bytes) -> NodeState:
    """The state a Status payload carries."""
    message = from_bytes(payload)
    assert isinstance(message, StatusMessage)
    return message.state


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, node: NodeProcess | None = None) -> None:
    """The suite's wait_until, with the node's log in the failure."""
    waiting.wait_until(predicate, timeout, what, logs=node.log if node is not None else None)


def wait_online(watch: MessageCollector, topic: str, node: NodeProcess, after: int = 0, timeout: float = 30.0) -> None:
    """Wait for an ONLINE Status beyond the first `after` messages."""

    def online() -> bool:
        return any(
            m.topic == topic and status_state(m.payload) is NodeState.ONLINE for m in watch.messages[after:]
        )

    wait_until(online, timeout, "ONLINE status", node)


def sensors(watch: MessageCollector, topic: str) -> list[SensorsMessage]:
    """Every Sensors message received so far, parsed strictly."""
    parsed = []
    for m in list(watch.messages):
        if m.topic == topic:
            message = from_bytes(m.payload)
            assert isinstance(message, SensorsMessage)
            parsed.append(message)
    return parsed
